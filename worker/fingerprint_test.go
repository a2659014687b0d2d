package worker

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/ringtrain/ringtrain/allreduce"
	"github.com/ringtrain/ringtrain/cluster"
	"github.com/ringtrain/ringtrain/cluster/clustertest"
	"github.com/ringtrain/ringtrain/coordinator"
	"github.com/ringtrain/ringtrain/dataset"
	"github.com/ringtrain/ringtrain/internal/usage"
	"github.com/ringtrain/ringtrain/train"
)

// agreeAll runs agreeSteps on every rank of an in-memory ring: rank r at
// steps[r] with fingerprint fps[r] (nil: float mode).
func agreeAll(t *testing.T, steps []int64, fps []*train.Fingerprint) ([][]int64, []error) {
	t.Helper()
	n := len(steps)
	net := allreduce.NewMemNetwork()
	g := cluster.Generation{Gen: 7}
	for r := range n {
		g.Members = append(g.Members, cluster.Member{ID: fmt.Sprintf("w%d", r), Addr: fmt.Sprintf("mem-%d", r)})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cfg := train.DefaultConfig()
	cfg.Layers = "4-3-2"
	got, errs := make([][]int64, n), make([]error, n)
	// Every rank's transport exists before any ring dials its neighbour.
	trs := make([]allreduce.Transport, n)
	for r := range n {
		trs[r] = net.Transport(g.Members[r].Addr)
		defer trs[r].Close()
	}
	var wg sync.WaitGroup
	for r := range n {
		tr := trs[r]
		st, err := train.NewState(cfg, &dataset.Set{N: 1000, Dim: 4, Classes: 2})
		if err != nil {
			t.Fatal(err)
		}
		st.Step = steps[r]
		wg.Add(1)
		go func() {
			defer wg.Done()
			ring, err := allreduce.NewRing(ctx, tr, allreduce.Config{RunID: "t", Generation: g.Gen, Members: g.Addrs(), Rank: r, PeerTimeout: 5 * time.Second})
			if err != nil {
				errs[r] = err
				return
			}
			defer ring.Close()
			w := &Worker{st: st, fp: fps[r]}
			got[r], errs[r] = w.agreeSteps(ctx, &gen{g: g, rank: r, ring: ring})
		}()
	}
	wg.Wait()
	return got, errs
}

// TestAgreeStepsFingerprint: at a generation's start every rank states its
// step and its fingerprint's digest; a rank whose digest differs stops every
// rank with ErrFingerprint, naming it.
func TestAgreeStepsFingerprint(t *testing.T) {
	fp := train.Fingerprint{GEMM: "openblas", Kernel: "Haswell", Threads: 1, GOARCH: "amd64", Data: strings.Repeat("5a", 32)}
	other := fp
	other.Threads = 2
	steps := []int64{3, 1<<30 + 5, 0} // the second needs both 24-bit halves

	for name, fps := range map[string][]*train.Fingerprint{
		"exact": {&fp, &fp, &fp},
		"float": {nil, nil, nil},
	} {
		got, errs := agreeAll(t, steps, fps)
		for r := range steps {
			if errs[r] != nil {
				t.Fatalf("%s: rank %d: %v", name, r, errs[r])
			}
			if !slices.Equal(got[r], steps) {
				t.Fatalf("%s: rank %d agreed on steps %v, want %v", name, r, got[r], steps)
			}
		}
	}

	_, errs := agreeAll(t, steps, []*train.Fingerprint{&fp, &fp, &other})
	for r, err := range errs {
		if !errors.Is(err, ErrFingerprint) {
			t.Fatalf("rank %d: %v, want ErrFingerprint", r, err)
		}
		msg := err.Error()
		want := fmt.Sprintf("rank 2 (w2) states %08x, this rank %08x", other.Sum32(), fp.Sum32())
		if r == 2 {
			want = fmt.Sprintf("rank 0 (w0) states %08x, rank 1 (w1) states %08x, this rank %08x", fp.Sum32(), fp.Sum32(), other.Sum32())
		}
		if !strings.Contains(msg, want) || !strings.Contains(msg, "generation 7") {
			t.Fatalf("rank %d: %q does not contain %q and the generation", r, msg, want)
		}
	}
}

// fpRun is an exact run for the fingerprint tests: embedded etcd, a
// coordinator that waits for 2 workers, and workers started one by one on
// the CSV sets train (the run's), other (different) and test.
type fpRun struct {
	t                  *testing.T
	ctx                context.Context
	dir                string
	etcd               []string
	c                  *cluster.Client
	train, other, test string
	wg                 sync.WaitGroup
	coord              chan error
	gossipKey          []byte // the run's, the coordinator's
	ca                 *testCA
}

func newFPRun(t *testing.T) *fpRun {
	t.Helper()
	r := &fpRun{t: t, dir: t.TempDir(), coord: make(chan error, 1)}
	r.train, r.other, r.test = filepath.Join(r.dir, "train.csv"), filepath.Join(r.dir, "other.csv"), filepath.Join(r.dir, "test.csv")
	writeCSV(t, r.train, 120, 1)
	writeCSV(t, r.other, 120, 5)
	writeCSV(t, r.test, 30, 2)
	r.etcd = clustertest.Etcd(t).Endpoints()
	r.c = cluster.NewClient(clustertest.EtcdClient(t, r.etcd), "fp", zap.NewNop())
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	r.ctx = ctx
	t.Cleanup(func() { cancel(); r.wg.Wait() }) // before etcd closes

	cfg := fpConfig()
	cc := coordinator.TestConfig(r.etcd, "fp", "coord")
	cc.HTTPAddr = ""
	cc.Spec = cluster.RunSpec{Config: cfg.Spec, MinWorkers: 2, HashEvery: 1}
	cc.Logger = zap.NewNop()
	r.gossipKey = cc.GossipKey
	r.ca = newTestCA(t, "fp")
	coord, err := coordinator.New(cc)
	if err != nil {
		t.Fatal(err)
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		r.coord <- coord.Run(ctx)
	}()
	return r
}

// fpConfig is the runs' spec: exact (the default), 3 steps.
func fpConfig() train.Config {
	cfg := train.DefaultConfig()
	cfg.Layers, cfg.Batch, cfg.Steps, cfg.LR, cfg.MicroBatch = "16-8-4", 24, 3, 0.1, 8
	return cfg
}

// start runs worker id on the training set data with --threads threads;
// Run's error arrives on the channel.
func (r *fpRun) start(id, data string, threads int) <-chan error {
	wc := DefaultConfig()
	wc.Etcd, wc.Run, wc.ID = r.etcd, "fp", id
	wc.GossipKey, wc.TLS = r.gossipKey, r.ca.files(r.t, id)
	wc.Listen, wc.GossipListen, wc.HTTPAddr = "127.0.0.1:0", "127.0.0.1:0", ""
	wc.PeerTimeout, wc.LeaseTTL = 2*time.Second, 2*time.Second
	wc.Data, wc.Threads = "csv:"+data+","+r.test, threads
	wc.CheckpointDir = filepath.Join(r.dir, "ckpt")
	wc.Logger = zap.NewNop()
	w, err := New(wc)
	if err != nil {
		r.t.Fatal(err)
	}
	done := make(chan error, 1)
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		done <- w.Run(r.ctx)
	}()
	return done
}

// registered waits until id is registered and returns its registration;
// running is the worker's Run, which must not return first.
func (r *fpRun) registered(id string, running <-chan error) cluster.WorkerInfo {
	r.t.Helper()
	for {
		ws, err := r.c.Workers(r.ctx)
		if err != nil {
			r.t.Fatal(err)
		}
		for _, w := range ws {
			if w.ID == id {
				return w
			}
		}
		select {
		case err := <-running:
			r.t.Fatalf("%s returned before registering or before a second worker came: %v", id, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// TestFingerprintRefusesWorker: in an exact run, workers whose --threads or
// training data differ from the run's are refused with a usage error in one
// line, before they register, while the others train to the end.
func TestFingerprintRefusesWorker(t *testing.T) {
	r := newFPRun(t)
	// w0 comes first: it registers, the coordinator stores its fingerprint
	// as the run's, and it waits for a second worker.
	w0 := r.start("w0", r.train, 0)
	info := r.registered("w0", w0)
	stored, err := r.c.WaitFingerprint(r.ctx)
	if err != nil {
		t.Fatalf("the run's fingerprint: %v", err)
	}
	if info.Fingerprint != stored || stored.Threads != 1 {
		t.Fatalf("w0 registered with fingerprint %+v; the run's is %+v (want threads 1)", info.Fingerprint, stored)
	}

	for _, tc := range []struct {
		id, data string
		threads  int
		want     string
	}{
		{"w-threads", r.train, 2, "worker w-threads: --threads 2 differs from the run's 1 (the fingerprint of exact training: GEMM backend and kernel, fixed-point kernel, threads, GOARCH, data); start it with --threads 1"},
		{"w-data", r.other, 0, "worker w-data: the training data (sha256 "},
	} {
		err := <-r.start(tc.id, tc.data, tc.threads)
		if !usage.Is(err) || !strings.HasPrefix(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Fatalf("%s: Run = %v; want a one-line usage error starting %q", tc.id, err, tc.want)
		}
	}
	if ws, err := r.c.Workers(r.ctx); err != nil || len(ws) != 1 {
		t.Fatalf("after the refusals the workers are %+v, %v; want w0 alone", ws, err)
	}

	// A second worker like w0: the run trains to its end.
	w1 := r.start("w1", r.train, 1)
	for id, ch := range map[string]<-chan error{"w0": w0, "w1": w1} {
		if err := <-ch; err != nil {
			t.Fatalf("%s: %v", id, err)
		}
	}
	if err := <-r.coord; err != nil {
		t.Fatalf("coordinator: %v", err)
	}
	sum, ok, err := r.c.Done(r.ctx)
	if err != nil || !ok || sum.Workers != 2 || sum.Step != fpConfig().Steps {
		t.Fatalf("run done = %v (%+v), %v; want %d steps on 2 workers", ok, sum, err, fpConfig().Steps)
	}
}

// TestFingerprintOnTheRing: workers that passed the etcd check with
// different fingerprints (the key was deleted between them) find out at
// the generation's start, and each stops with ErrFingerprint, not a ring
// failure to retry.
func TestFingerprintOnTheRing(t *testing.T) {
	r := newFPRun(t)
	w0 := r.start("w0", r.train, 0)
	r.registered("w0", w0)
	// The coordinator stores w0's fingerprint from its registration; only
	// once it has can deleting it stand (promotion acts on registrations
	// as they arrive), leaving the run with none while w1 registers.
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, stored, err := r.c.Fingerprint(r.ctx); err == nil && stored {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the coordinator never stored w0's fingerprint")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := r.c.Etcd().Delete(r.ctx, r.c.Key(cluster.KeyFingerprint)); err != nil {
		t.Fatal(err)
	}
	w1 := r.start("w1", r.other, 0)
	for id, ch := range map[string]<-chan error{"w0": w0, "w1": w1} {
		err := <-ch
		if !errors.Is(err, ErrFingerprint) {
			t.Fatalf("%s: Run = %v, want ErrFingerprint", id, err)
		}
		other := map[string]string{"w0": "rank 1 (w1)", "w1": "rank 0 (w0)"}[id]
		if !strings.Contains(err.Error(), other) {
			t.Fatalf("%s: %q does not name %s", id, err, other)
		}
	}
	if _, done, err := r.c.Done(r.ctx); err != nil || done {
		t.Fatalf("the run is done (%v, %v); it must not train", done, err)
	}
}

// TestFloatModeStoresNoFingerprint: in float mode nothing is checked and
// no fingerprint is stated on the ring; in exact mode a worker states its
// own, and stores none itself (a coordinator takes it from its
// registration).
func TestFloatModeStoresNoFingerprint(t *testing.T) {
	dir := t.TempDir()
	trainCSV, testCSV := filepath.Join(dir, "train.csv"), filepath.Join(dir, "test.csv")
	writeCSV(t, trainCSV, 40, 1)
	writeCSV(t, testCSV, 10, 2)
	e := clustertest.Etcd(t)
	cli := clustertest.EtcdClient(t, e.Endpoints())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	for _, exact := range []bool{false, true} {
		spec := train.DefaultConfig().Spec
		spec.Layers, spec.Batch, spec.Steps, spec.Exact = "16-8-4", 8, 1, exact
		run := fmt.Sprintf("exact-%v", exact)
		c := cluster.NewClient(cli, run, zap.NewNop())
		w := &Worker{cfg: Config{ID: "w0", Data: "csv:" + trainCSV + "," + testCSV, Threads: 1}, log: zap.NewNop(),
			run: c, spec: cluster.RunSpec{Config: spec, MinWorkers: 1}}
		if err := w.prepare(ctx); err != nil {
			t.Fatalf("exact=%v: prepare: %v", exact, err)
		}
		_, stored, err := c.Fingerprint(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if stored || (w.fp != nil) != exact {
			t.Fatalf("exact=%v: a fingerprint stored: %v, stated: %v", exact, stored, w.fp != nil)
		}
	}
}
