package worker

import (
	"context"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/ringtrain/ringtrain/cluster"
	"github.com/ringtrain/ringtrain/cluster/clustertest"
	"github.com/ringtrain/ringtrain/coordinator"
	"github.com/ringtrain/ringtrain/internal/pki"
	"github.com/ringtrain/ringtrain/internal/usage"
	"github.com/ringtrain/ringtrain/train"
)

const testEnrollToken = "0123456789abcdef0123456789abcdef"

// Workers without certificates enroll with the leading coordinator — one
// finding it in etcd, one from a list of addresses — and train the run
// over mutual TLS to its end.
func TestWorkersEnrollAndTrain(t *testing.T) {
	dir := t.TempDir()
	writeCSV(t, filepath.Join(dir, "train.csv"), 120, 1)
	writeCSV(t, filepath.Join(dir, "test.csv"), 30, 2)
	cfg := train.DefaultConfig()
	cfg.Layers, cfg.Batch, cfg.Steps, cfg.LR = "16-8-4", 24, 3, 0.1
	cfg.Data = "csv:" + filepath.Join(dir, "train.csv") + "," + filepath.Join(dir, "test.csv")
	cfg.CheckpointDir = filepath.Join(dir, "ckpt")
	const run = "enr"
	e := clustertest.Etcd(t)
	ca := newTestCA(t, run)
	coordID := pki.Coordinator(run, "c1")
	leaves, err := ca.a.LeafFiles(ca.dir, []pki.Identity{coordID}, pki.IssueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := pki.WriteFiles(leaves, false); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cc := coordinator.TestConfig(e.Endpoints(), run, "c1")
	cc.HTTPAddr = ""
	cc.ListenGRPC = "127.0.0.1:0"
	cc.TLS = pki.DirFiles(pki.LeafDir(ca.dir, coordID))
	cc.CADir, cc.EnrollToken = ca.dir, testEnrollToken
	cc.Spec = cluster.RunSpec{Config: cfg.Spec, MinWorkers: 2, HashEvery: 1}
	cc.Logger = zap.NewNop() // memberlist may log after the test returns
	coord, err := coordinator.New(cc)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	wg.Go(func() { errs <- coord.Run(ctx) })
	var grpcAddr string
	for deadline := time.Now().Add(10 * time.Second); grpcAddr == "" && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		grpcAddr = coord.Status().GRPCAddr
	}
	for i, id := range []string{"w0", "w1"} {
		wc := DefaultConfig()
		wc.Etcd, wc.Run, wc.ID = e.Endpoints(), run, id
		wc.GossipKey = cc.GossipKey
		wc.TLS = pki.Files{CA: filepath.Join(ca.dir, pki.RootFile)}
		wc.EnrollToken = testEnrollToken
		if i == 1 {
			wc.EnrollAddrs = []string{grpcAddr}
		}
		wc.Listen, wc.GossipListen, wc.HTTPAddr, wc.HealthAddr = "127.0.0.1:0", "127.0.0.1:0", "", "127.0.0.1:0"
		wc.PeerTimeout, wc.LeaseTTL = 2*time.Second, 2*time.Second
		wc.Data, wc.CheckpointDir = cfg.Data, cfg.CheckpointDir
		wc.Logger = zap.NewNop()
		w, err := New(wc)
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			err := w.Run(ctx)
			if err == nil && (w.tls == nil || w.tls.Identity() != pki.Worker(run, id)) {
				t.Errorf("%s trained without its enrolled certificate", id)
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	cli, err := clientv3.New(cluster.EtcdClientConfig(e.Endpoints(), zap.NewNop()))
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	sum, ok, err := cluster.NewClient(cli, run, zap.NewNop()).Done(context.Background())
	if err != nil || !ok || sum.Workers != 2 || sum.Step != int64(cfg.Steps) {
		t.Fatalf("run done %v (%v): %+v, want 2 workers at step %d", ok, err, sum, cfg.Steps)
	}
}

func TestEnrollConfig(t *testing.T) {
	c := DefaultConfig()
	c.Etcd, c.Run, c.ID, c.GossipKey = []string{"127.0.0.1:2379"}, "r", "w1", make([]byte, 32)
	c.EnrollToken = testEnrollToken
	if err := c.Validate(); !usage.Is(err) || !strings.Contains(err.Error(), "--tls-ca") {
		t.Fatalf("a token without the CA: %v", err)
	}
	c.TLS = testCerts(t, "r", "w1")["w1"]
	if err := c.Validate(); !usage.Is(err) || !strings.Contains(err.Error(), "exclude each other") {
		t.Fatalf("a token and a certificate: %v", err)
	}
	c.TLS = pki.Files{CA: c.TLS.CA}
	if _, err := New(c); err != nil {
		t.Fatalf("the CA and a token: %v", err)
	}
}
