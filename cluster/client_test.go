package cluster

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/train"
)

func testSpec(min, max int) RunSpec {
	return RunSpec{Config: train.DefaultConfig().Spec, MinWorkers: min, MaxWorkers: max, HashEvery: 100}
}

func TestClientSpec(t *testing.T) {
	e := startEtcd(t)
	c := newTestClient(t, e, "spec")
	ctx := testCtx(t, 20*time.Second)
	if _, err := c.Spec(ctx); err == nil {
		t.Fatal("Spec on an empty run: no error")
	}
	got := make(chan RunSpec, 1)
	go func() {
		s, err := c.WaitSpec(ctx)
		if err != nil {
			t.Error(err)
		}
		got <- s
	}()
	time.Sleep(50 * time.Millisecond)
	first, second := testSpec(2, 4), testSpec(1, 0)
	if s, err := c.PutSpecIfAbsent(ctx, first); err != nil || s.MinWorkers != 2 {
		t.Fatalf("first put: %+v, %v", s, err)
	}
	if s, err := c.PutSpecIfAbsent(ctx, second); err != nil || s.MinWorkers != 2 || s.MaxWorkers != 4 {
		t.Fatalf("second put returned %+v, %v; want the stored first spec", s, err)
	}
	if s := <-got; s.MinWorkers != 2 {
		t.Fatalf("WaitSpec = %+v", s)
	}
	// WaitSpec honours ctx.
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := newTestClient(t, e, "other").WaitSpec(short); err == nil {
		t.Fatal("WaitSpec on a run without spec returned no error when ctx ended")
	}
}

func TestPublishCheckpointCAS(t *testing.T) {
	e := startEtcd(t)
	c := newTestClient(t, e, "ckpt")
	ctx := testCtx(t, 20*time.Second)
	if _, ok, err := c.LatestCheckpoint(ctx); ok || err != nil {
		t.Fatalf("empty run: ok=%v err=%v", ok, err)
	}
	for _, tc := range []struct {
		step int64
		won  bool
		want int64
	}{{100, true, 100}, {300, true, 300}, {200, false, 300}, {300, false, 300}, {301, true, 301}} {
		won, err := c.PublishCheckpoint(ctx, CheckpointRef{Step: tc.step, Dir: fmt.Sprintf("step-%08d", tc.step)})
		if err != nil || won != tc.won {
			t.Fatalf("publish %d: won=%v err=%v, want won=%v", tc.step, won, err, tc.won)
		}
		ref, ok, err := c.LatestCheckpoint(ctx)
		if err != nil || !ok || ref.Step != tc.want {
			t.Fatalf("after %d: latest %+v ok=%v err=%v, want step %d", tc.step, ref, ok, err, tc.want)
		}
	}
	// Concurrent writers: the highest step wins, whatever the order.
	errs := make(chan error, 20)
	for i := range 20 {
		go func() {
			_, err := c.PublishCheckpoint(ctx, CheckpointRef{Step: int64(1000 + i)})
			errs <- err
		}()
	}
	for range 20 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if ref, _, _ := c.LatestCheckpoint(ctx); ref.Step != 1019 {
		t.Fatalf("after concurrent publishes latest = %d, want 1019", ref.Step)
	}
}

func TestCheckpointRefPath(t *testing.T) {
	for _, tc := range []struct {
		name, dir, root, want string
	}{
		{"relative name", "step-00004680", "/mnt/ckpt", "/mnt/ckpt/step-00004680"},
		{"relative name, relative root", "step-00004680", "ckpt", "ckpt/step-00004680"},
		{"relative name, no root", "step-00004680", "", "step-00004680"},
		{"old format: the writer's absolute path", "/checkpoints/step-00004680", "/mnt/ckpt", "/mnt/ckpt/step-00004680"},
		{"old format, trailing slash", "/checkpoints/step-00004680/", "/mnt/ckpt", "/mnt/ckpt/step-00004680"},
		{"old format, no root", "/checkpoints/step-00004680", "", "step-00004680"},
		{"not below the root", "../elsewhere/step-00000001", "/mnt/ckpt", "/mnt/ckpt/step-00000001"},
		{"no checkpoint", "", "/mnt/ckpt", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := (CheckpointRef{Dir: tc.dir}).Path(tc.root); got != tc.want {
				t.Errorf("CheckpointRef{Dir: %q}.Path(%q) = %q, want %q", tc.dir, tc.root, got, tc.want)
			}
		})
	}
}

// TestLatestCheckpointFormats reads back, from etcd, a pointer in the
// current format (a name under the checkpoint root) and one written by the
// previous release (the writer's absolute path): both resolve under the
// reader's root.
func TestLatestCheckpointFormats(t *testing.T) {
	e := startEtcd(t)
	ctx := testCtx(t, 20*time.Second)
	for run, dir := range map[string]string{"new": "step-00000040", "old": "/writer/checkpoints/step-00000040"} {
		c := newTestClient(t, e, run)
		if _, ok, err := c.LatestCheckpoint(ctx); ok || err != nil {
			t.Fatalf("%s: before any checkpoint: ok=%v err=%v", run, ok, err)
		}
		if run == "old" { // as the previous release wrote it
			if _, err := c.Etcd().Put(ctx, c.Key(KeyCheckpoint), `{"step":40,"dir":"`+dir+`","gen":3,"time":"2026-11-27T02:13:00Z"}`); err != nil {
				t.Fatal(err)
			}
		} else if won, err := c.PublishCheckpoint(ctx, CheckpointRef{Step: 40, Dir: dir, Gen: 3, Time: time.Now()}); !won || err != nil {
			t.Fatalf("publish: won=%v err=%v", won, err)
		}
		ref, ok, err := c.LatestCheckpoint(ctx)
		if err != nil || !ok || ref.Step != 40 || ref.Gen != 3 || ref.Dir != dir {
			t.Fatalf("%s: latest %+v ok=%v err=%v", run, ref, ok, err)
		}
		if got, want := ref.Path("/reader/ckpt"), "/reader/ckpt/step-00000040"; got != want {
			t.Errorf("%s: Path = %q, want %q", run, got, want)
		}
	}
}

func TestClientProgressEventsDone(t *testing.T) {
	e := startEtcd(t)
	c := newTestClient(t, e, "misc")
	ctx := testCtx(t, 30*time.Second)

	// Each rank 0 writes its own progress key; the most advanced wins, an
	// older release's single key included.
	if _, err := c.Etcd().Put(ctx, c.Key(keyOldProgress), Marshal(Progress{Gen: 2, Step: 9})); err != nil {
		t.Fatal(err)
	}
	for _, p := range []struct {
		who  string
		gen  uint64
		step int64
	}{{"w-old-rank0", 2, 8}, {"w-rank0", 3, 7}, {"w-stale", 1, 20}} {
		if err := c.PublishProgress(ctx, p.who, Progress{Gen: p.gen, Step: p.step, TotalSteps: 10, Loss: 0.5}); err != nil {
			t.Fatal(err)
		}
	}
	if p, ok, err := c.Progress(ctx); err != nil || !ok || p.Step != 7 || p.Gen != 3 {
		t.Fatalf("progress %+v %v %v, want gen 3 step 7", p, ok, err)
	}
	if err := c.PublishProgress(ctx, "", Progress{}); err == nil {
		t.Fatal("progress without a worker ID accepted")
	}

	base := time.Unix(1_700_000_000, 0)
	for i := range MaxEvents + 30 {
		// Every other event collides with its predecessor's time.
		if err := c.AddEvent(ctx, Event{Time: base.Add(time.Duration(i/2) * time.Second), Kind: "joined", Who: fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
	}
	all, err := c.Events(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) < MaxEvents || len(all) > MaxEvents+MaxEvents/10 {
		t.Fatalf("kept %d events, want about %d", len(all), MaxEvents)
	}
	last, err := c.Events(ctx, 3)
	if err != nil || len(last) != 3 || last[2].Who != fmt.Sprint(MaxEvents+29) || last[0].Who != fmt.Sprint(MaxEvents+27) {
		t.Fatalf("newest 3 = %+v, %v", last, err)
	}

	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := c.WatchDone(wctx)
	if _, ok, _ := c.Done(ctx); ok {
		t.Fatal("done before MarkDone")
	}
	if stored, err := c.MarkDone(ctx, train.Summary{Step: 42}); err != nil || !stored {
		t.Fatal(stored, err)
	}
	// The first summary stays.
	if stored, err := c.MarkDone(ctx, train.Summary{Step: 43}); err != nil || stored {
		t.Fatalf("second MarkDone: stored=%v %v", stored, err)
	}
	select {
	case s := <-done:
		if s.Step != 42 {
			t.Fatalf("WatchDone = %+v", s)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("WatchDone did not fire")
	}
	if s, ok, err := c.Done(ctx); !ok || err != nil || s.Step != 42 {
		t.Fatalf("Done = %+v %v %v", s, ok, err)
	}
	// Already done: WatchDone fires at once.
	if s := <-c.WatchDone(ctx); s.Step != 42 {
		t.Fatalf("second WatchDone = %+v", s)
	}
}

func TestRegistrationSurvivesLeaseLoss(t *testing.T) {
	e := startEtcd(t)
	c := newTestClient(t, e, "reg")
	ctx := testCtx(t, 30*time.Second)
	info := WorkerInfo{ID: "w1", Addr: "127.0.0.1:1", Started: time.Unix(1, 0)}
	reg, err := c.Register(ctx, info, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	if ws, err := c.Workers(ctx); err != nil || len(ws) != 1 || ws[0].ID != "w1" {
		t.Fatalf("workers = %+v, %v", ws, err)
	}
	// The lease is lost behind our back (as after an outage longer than
	// the TTL): the key goes, and the registration puts it back.
	old := reg.Lease()
	if _, err := c.Etcd().Revoke(ctx, old); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		ws, _ := c.Workers(ctx)
		if len(ws) == 1 && reg.Lease() != old {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not re-registered: workers %+v lease %x (old %x)", ws, reg.Lease(), old)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := reg.Registrations(); n != 2 {
		t.Errorf("registrations = %d, want 2", n)
	}
	if err := reg.Close(); err != nil {
		t.Fatal(err)
	}
	if err := reg.Close(); err != nil { // idempotent
		t.Fatal(err)
	}
	if ws, _ := c.Workers(ctx); len(ws) != 0 {
		t.Fatalf("after Close workers = %+v", ws)
	}
}

// TestWatchGenerationAcrossEtcdRestart stops etcd under a watch and starts
// it again on the same data directory and ports.
func TestWatchGenerationAcrossEtcdRestart(t *testing.T) {
	dir := t.TempDir()
	cfg := EtcdConfig{Dir: dir, ListenClientURLs: "http://127.0.0.1:0", ListenPeerURLs: "http://127.0.0.1:0", Fast: true}
	e, err := StartEtcd(cfg)
	if err != nil {
		t.Fatal(err)
	}
	restarted := false
	defer func() {
		if !restarted {
			e.Close()
		}
	}()
	c := newTestClient(t, e, "restart")
	ctx := testCtx(t, 40*time.Second)
	if err := c.put(ctx, KeyGeneration, Generation{Gen: 1}); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	gens := c.WatchGeneration(wctx)
	recv := func(want uint64) {
		t.Helper()
		select {
		case g := <-gens:
			if g.Gen != want {
				t.Fatalf("got gen %d, want %d", g.Gen, want)
			}
		case <-time.After(15 * time.Second):
			t.Fatalf("no gen %d", want)
		}
	}
	recv(1)
	if err := c.put(ctx, KeyGeneration, Generation{Gen: 2}); err != nil {
		t.Fatal(err)
	}
	recv(2)

	cfg.ListenClientURLs = "http://" + e.Endpoints()[0]
	cfg.ListenPeerURLs = e.PeerURLs()[0]
	t0 := time.Now()
	e.Close()                          // about 5 s: etcd waits for open watch streams before it cuts them
	time.Sleep(300 * time.Millisecond) // the watch is now retrying
	e2, err := StartEtcd(cfg)
	if err != nil {
		t.Fatal(err)
	}
	restarted = true
	defer e2.Close()
	if err := c.put(ctx, KeyGeneration, Generation{Gen: 3}); err != nil {
		t.Fatal(err)
	}
	recv(3)
	t.Logf("etcd down at %v; gen 3 received %v later", t0.Format("15:04:05.000"), time.Since(t0).Round(time.Millisecond))
	cancel()
	for range gens { // closed when ctx ends
	}
}
