package worker

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"
	"go.uber.org/zap"

	"github.com/ringtrain/ringtrain/checkpoint"
	"github.com/ringtrain/ringtrain/cluster"
	"github.com/ringtrain/ringtrain/cluster/clustertest"
	"github.com/ringtrain/ringtrain/coordinator"
	"github.com/ringtrain/ringtrain/train"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// writeCSV writes a small classification set: 16 features, 4 classes.
func writeCSV(t *testing.T, path string, n int, seed uint64) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 3))
	var b strings.Builder
	for i := 0; i < n; i++ {
		s := 0.0
		for j := 0; j < 16; j++ {
			v := rng.Float64()
			s += v * float64(j%4)
			fmt.Fprintf(&b, "%.4f,", v)
		}
		fmt.Fprintf(&b, "%d\n", int(s)%4)
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

// runCluster trains cfg with n in-process workers (real gRPC on loopback,
// a real coordinator and embedded etcd) and returns the final checkpoint.
func runCluster(t *testing.T, etcd []string, run string, cfg train.Config, n int) *checkpoint.Checkpoint {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cc := coordinator.TestConfig(etcd, run, "coord-"+run)
	cc.HTTPAddr = ""
	cc.Spec = cluster.RunSpec{Config: cfg.Spec, MinWorkers: n, HashEvery: 1}
	cc.Logger = zap.NewNop() // memberlist may log after the test returns
	coord, err := coordinator.New(cc)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, n+1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		errs <- coord.Run(ctx)
	}()
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("w%d", i)
	}
	certs := testCerts(t, run, ids...)
	for i := 0; i < n; i++ {
		wc := DefaultConfig()
		wc.Etcd, wc.Run, wc.ID = etcd, run, ids[i]
		wc.GossipKey, wc.TLS = cc.GossipKey, certs[ids[i]]
		wc.Listen, wc.GossipListen, wc.HTTPAddr = "127.0.0.1:0", "127.0.0.1:0", ""
		wc.PeerTimeout, wc.LeaseTTL = 2*time.Second, 2*time.Second
		wc.Data, wc.CheckpointDir = cfg.Data, cfg.CheckpointDir
		wc.Logger = zap.NewNop() // memberlist may log after the test returns
		w, err := New(wc)
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- w.Run(ctx)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("run %s: %v", run, err)
		}
	}
	cli, err := clientv3.New(cluster.EtcdClientConfig(etcd, zap.NewNop()))
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	sum, ok, err := cluster.NewClient(cli, run, zap.NewNop()).Done(context.Background())
	if err != nil || !ok {
		t.Fatalf("run %s not done: %v", run, err)
	}
	if sum.Workers != n {
		t.Fatalf("run %s finished on %d workers, want %d", run, sum.Workers, n)
	}
	ck, err := checkpoint.Load(sum.Checkpoint)
	if err != nil {
		t.Fatal(err)
	}
	return ck
}

// Data-parallel training with N workers gives the parameters of
// single-process training on the whole global batch.
func TestRingMatchesSingleProcess(t *testing.T) {
	dir := t.TempDir()
	writeCSV(t, filepath.Join(dir, "train.csv"), 300, 1)
	writeCSV(t, filepath.Join(dir, "test.csv"), 60, 2)
	cfg := train.DefaultConfig()
	cfg.Layers = "16-12-4"
	cfg.Batch = 24
	cfg.Steps = 3
	cfg.LR = 0.1
	cfg.Data = "csv:" + filepath.Join(dir, "train.csv") + "," + filepath.Join(dir, "test.csv")

	single := cfg
	single.CheckpointDir = filepath.Join(dir, "single")
	if _, err := train.Run(context.Background(), single, train.Options{}); err != nil {
		t.Fatal(err)
	}
	want, err := checkpoint.LatestValid(single.CheckpointDir, nil)
	if err != nil {
		t.Fatal(err)
	}

	e := clustertest.Etcd(t)
	for _, n := range []int{1, 2, 3} {
		c := cfg
		c.CheckpointDir = filepath.Join(dir, fmt.Sprintf("ring%d", n))
		got := runCluster(t, e.Endpoints(), fmt.Sprintf("n%d", n), c, n)
		if got.Manifest.Step != want.Manifest.Step {
			t.Fatalf("N=%d: final step %d, single process %d", n, got.Manifest.Step, want.Manifest.Step)
		}
		for i, ts := range got.Model {
			ws := want.Model[i]
			for j, v := range ts.Data {
				w := ws.Data[j]
				if math.Abs(float64(v-w)) > 1e-5*math.Max(1, math.Abs(float64(w))) {
					t.Fatalf("N=%d: %s[%d] = %v, single process %v", n, ts.Name, j, v, w)
				}
			}
		}
	}
}
