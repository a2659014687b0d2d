package coordinator

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/ringtrain/ringtrain/cluster"
	"github.com/ringtrain/ringtrain/internal/usage"
	"github.com/ringtrain/ringtrain/train"
)

// runCoordinator starts a coordinator; the returned stop cancels it and
// waits for Run to return.
func runCoordinator(t *testing.T, cfg Config) (*Coordinator, func()) {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)).Named(cfg.ID)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- c.Run(ctx) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-errc:
			if err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("%s: Run: %v", cfg.ID, err)
			}
		case <-time.After(15 * time.Second):
			t.Errorf("%s: Run did not return 15 s after cancel", cfg.ID)
		}
	}
	t.Cleanup(stop)
	return c, stop
}

// genWatcher follows a run's generations.
type genWatcher struct {
	t    *testing.T
	gens <-chan cluster.Generation
	last cluster.Generation
}

func watchGens(t *testing.T, c *cluster.Client) *genWatcher {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	return &genWatcher{t: t, gens: c.WatchGeneration(ctx)}
}

// until waits for a generation with exactly the member IDs want, in order,
// and checks that numbers strictly increase on the way.
func (w *genWatcher) until(timeout time.Duration, want ...string) cluster.Generation {
	w.t.Helper()
	tm := time.NewTimer(timeout)
	defer tm.Stop()
	for {
		select {
		case g := <-w.gens:
			if g.Gen <= w.last.Gen {
				w.t.Fatalf("generation went from %d to %d", w.last.Gen, g.Gen)
			}
			w.last = g
			var ids []string
			for _, m := range g.Members {
				ids = append(ids, m.ID)
			}
			if slices.Equal(ids, want) {
				return g
			}
		case <-tm.C:
			w.t.Fatalf("no generation with members %v within %v (last %s %q)", want, timeout, w.last, w.last.Reason)
		}
	}
}

func register(t *testing.T, c *cluster.Client, id string, ttl time.Duration) *cluster.Registration {
	t.Helper()
	r, _ := registerListening(t, c, id, ttl)
	return r
}

// registerListening registers worker id with a real ring port (a listener
// that accepts and drops connections, as a live worker's would for the
// leader's probe) and returns the listener too.
func registerListening(t *testing.T, c *cluster.Client, id string, ttl time.Duration) (*cluster.Registration, net.Listener) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lis.Close() })
	go func() {
		for {
			conn, err := lis.Accept()
			if err != nil {
				return
			}
			conn.Close()
		}
	}()
	r, err := c.Register(context.Background(), cluster.WorkerInfo{ID: id, Addr: lis.Addr().String(), Started: time.Now()}, ttl)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r, lis
}

// startRun starts an etcd and returns a client of run on it and a watcher
// of run's generations.
func startRun(t *testing.T, run string) (*cluster.Etcd, *cluster.Client, *genWatcher) {
	t.Helper()
	e := startEtcd(t)
	cl := newTestClient(t, e, run)
	return e, cl, watchGens(t, cl)
}

func TestCoordinatorFailover(t *testing.T) {
	run := "failover"
	e, cl, gens := startRun(t, run)

	c1, stop1 := runCoordinator(t, TestConfig(e.Endpoints(), run, "c1"))
	waitFor(t, 10*time.Second, "c1 leads", c1.IsLeader)
	c2, stop2 := runCoordinator(t, TestConfig(e.Endpoints(), run, "c2"))
	defer stop2()

	register(t, cl, "w1", 10*time.Second)
	register(t, cl, "w2", 10*time.Second)
	g := gens.until(10*time.Second, "w1", "w2")
	if g.Leader != "c1" {
		t.Fatalf("generation %s by %q, want c1", g, g.Leader)
	}
	if c2.IsLeader() {
		t.Fatal("both coordinators lead")
	}
	if id, ok, err := cl.Leader(context.Background()); err != nil || !ok || id != "c1" {
		t.Fatalf("Leader() = %q %v %v", id, ok, err)
	}

	// Kill the leader: the standby takes over and continues the numbering.
	start := time.Now()
	stop1()
	waitFor(t, 10*time.Second, "c2 leads", c2.IsLeader)
	t.Logf("leader failover (graceful stop): %v", time.Since(start).Round(time.Millisecond))
	register(t, cl, "w3", 10*time.Second)
	g2 := gens.until(10*time.Second, "w1", "w2", "w3")
	if g2.Leader != "c2" || g2.Gen <= g.Gen {
		t.Fatalf("after failover %s by %q; want > gen %d by c2", g2, g2.Leader, g.Gen)
	}

	// A worker whose lease ends leaves the ring.
	w2 := register(t, cl, "w2", 10*time.Second) // same ID, new process
	gens.until(10*time.Second, "w1", "w2", "w3")
	if err := w2.Close(); err != nil {
		t.Fatal(err)
	}
	gens.until(10*time.Second, "w1", "w3")
	evs, err := cl.Events(context.Background(), 0)
	if err != nil || len(evs) == 0 {
		t.Fatalf("events %v %v", evs, err)
	}
	// The status follows the publish; the watcher may see the key first.
	waitFor(t, 5*time.Second, "status shows the last generation", func() bool {
		st := c2.Status()
		return st.Leader && st.Generation.Gen == gens.last.Gen
	})
}

// TestCoordinatorCrashFailover: a leader that vanishes without resigning
// (its etcd session simply stops) is replaced within the lease TTL.
func TestCoordinatorCrashFailover(t *testing.T) {
	run := "crash"
	e, cl, gens := startRun(t, run)
	cfg1 := TestConfig(e.Endpoints(), run, "c1")
	crash := &crashElector{EtcdElector: EtcdElector{Client: cluster.NewClient(newEtcdClient(t, e.Endpoints()), run, nil), TTL: time.Second}}
	cfg1.Elector = crash
	c1, _ := runCoordinator(t, cfg1)
	waitFor(t, 10*time.Second, "c1 leads", c1.IsLeader)
	cfg2 := TestConfig(e.Endpoints(), run, "c2")
	cfg2.LeaseTTL = time.Second
	c2, _ := runCoordinator(t, cfg2)
	register(t, cl, "w1", 10*time.Second)
	g := gens.until(10*time.Second, "w1")

	start := time.Now()
	crash.crash() // c1's session lease is no longer kept alive nor revoked
	waitFor(t, 10*time.Second, "c2 leads", c2.IsLeader)
	t.Logf("leader failover (crash, 1 s session TTL): %v", time.Since(start).Round(time.Millisecond))
	register(t, cl, "w2", 10*time.Second)
	g2 := gens.until(10*time.Second, "w1", "w2")
	if g2.Leader != "c2" || g2.Gen != g.Gen+1 {
		t.Fatalf("after crash %s by %q, want gen %d by c2", g2, g2.Leader, g.Gen+1)
	}
	waitFor(t, 10*time.Second, "c1 steps down", func() bool { return !c1.IsLeader() })
}

// crashElector is the etcd election whose current session can be orphaned,
// like a leader process that froze or lost its network: keep-alives stop
// and nothing is revoked, so a standby must wait for the lease to expire.
type crashElector struct {
	EtcdElector
	mu      sync.Mutex
	term    *etcdTerm
	crashed bool
}

func (c *crashElector) Campaign(ctx context.Context, id string) (Term, error) {
	c.mu.Lock()
	crashed := c.crashed
	c.mu.Unlock()
	if crashed {
		// A crashed process campaigns no more. (Were it to, and the
		// standby's own short session lapse on a loaded machine, it could
		// queue ahead of the standby and lead again: correct, but not the
		// failover this test is about.)
		<-ctx.Done()
		return nil, ctx.Err()
	}
	t, err := c.EtcdElector.Campaign(ctx, id)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.term = t.(*etcdTerm)
	return &crashTerm{Term: t, e: c}, nil
}

func (c *crashElector) crash() {
	c.mu.Lock()
	c.crashed = true
	t := c.term
	c.mu.Unlock()
	t.s.Orphan()
}

type crashTerm struct {
	Term
	e *crashElector
}

func (t *crashTerm) Resign(ctx context.Context) error {
	t.e.mu.Lock()
	crashed := t.e.crashed
	t.e.mu.Unlock()
	if crashed {
		return nil // a crashed process revokes nothing
	}
	return t.Term.Resign(ctx)
}

func TestCoordinatorBounds(t *testing.T) {
	run := "bounds"
	e, cl, gens := startRun(t, run)
	cfg := TestConfig(e.Endpoints(), run, "c1")
	cfg.Spec = testSpec(2, 3)
	runCoordinator(t, cfg)
	gens.until(10 * time.Second) // no workers: an empty ring
	register(t, cl, "w1", 10*time.Second)
	register(t, cl, "w2", 10*time.Second)
	gens.until(10*time.Second, "w1", "w2")
	register(t, cl, "w3", 10*time.Second)
	w4 := register(t, cl, "w4", 10*time.Second)
	gens.until(10*time.Second, "w1", "w2", "w3") // w4 stands by
	w3 := register(t, cl, "w3", 10*time.Second)  // restart w3 as a new process
	gens.until(10*time.Second, "w1", "w2", "w3")
	w3.Close()
	gens.until(10*time.Second, "w1", "w2", "w4") // w4 admitted
	w4.Close()
	gens.until(10*time.Second, "w1", "w2")
	// Below MinWorkers: the run waits with an empty ring.
	if resp, err := cl.Etcd().Delete(context.Background(), cluster.Key(run, cluster.KeyWorkers+"w2")); err != nil || resp.Deleted != 1 {
		t.Fatalf("delete w2: %v %v", resp, err)
	}
	g := gens.until(10 * time.Second)
	if g.Reason == "" {
		t.Errorf("empty generation without a reason")
	}
}

// TestCoordinatorGossipSuspicion: gossip's "dead" alone (a member that
// stops answering, a spoofed verdict) changes no generation while the
// worker's lease lives and no collective failed; a member's report that the
// generation failed then excludes it at once, long before its lease would
// lapse. A gossip member without the run's key is never let in.
func TestCoordinatorGossipSuspicion(t *testing.T) {
	run := "gossip"
	e, cl, gens := startRun(t, run)
	cfg := TestConfig(e.Endpoints(), run, "c1")
	c, _ := runCoordinator(t, cfg)
	waitFor(t, 10*time.Second, "c1 leads", c.IsLeader)
	coords, err := cl.Coordinators(context.Background())
	if err != nil || len(coords) != 1 || coords[0].Gossip == "" {
		t.Fatalf("coordinators %+v %v", coords, err)
	}
	gossip := func(id string, key []byte) *cluster.Gossip {
		g, err := cluster.NewGossip(cluster.GossipConfig{Name: id, BindAddr: "127.0.0.1", Fast: true, SecretKey: key})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { g.Close() })
		return g
	}
	var gs []*cluster.Gossip
	for _, id := range []string{"w1", "w2", "w3"} {
		g := gossip(id, cfg.GossipKey)
		if _, err := g.Join([]string{coords[0].Gossip}); err != nil {
			t.Fatal(err)
		}
		gs = append(gs, g)
		r, err := cl.Register(context.Background(), cluster.WorkerInfo{ID: id, Addr: "127.0.0.1:" + id, Gossip: g.Addr(), Started: time.Now()}, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close() })
	}
	g := gens.until(10*time.Second, "w1", "w2", "w3")

	if _, err := gossip("intruder", nil).Join([]string{coords[0].Gossip}); err == nil {
		t.Error("a gossip member without the key joined the coordinator")
	}
	gs[1].Shutdown() // w2 stops answering gossip; its lease lives on for a minute
	gs[2].Close()    // w3 announces that it leaves, and its lease lives on too
	waitFor(t, 10*time.Second, "w2 and w3 suspected", func() bool {
		st := c.Status()
		return st.Suspected["w2"] && st.Suspected["w3"]
	})
	select {
	case g2 := <-gens.gens:
		t.Fatalf("gossip alone made %s (%q)", g2, g2.Reason)
	case <-time.After(time.Second): // 50 ticks
	}
	if st := c.Status(); len(st.Failed) != 0 || st.Generation.Gen != g.Gen {
		t.Fatalf("status %+v, want no failed worker and gen %d", st, g.Gen)
	}
	if c.Status().Suspected["intruder"] {
		t.Error("the intruder reached the coordinator's gossip")
	}

	start := time.Now()
	if err := cl.ReportFailure(context.Background(), cluster.Failure{Reporter: "w1", Gen: g.Gen, Suspect: "w2", Error: "recv chunk 1 from rank 1: timeout"}); err != nil {
		t.Fatal(err)
	}
	gens.until(10*time.Second, "w1")
	t.Logf("failure report to new generation: %v", time.Since(start).Round(time.Millisecond))
	if st := c.Status(); !st.Failed["w2"] || !st.Failed["w3"] {
		t.Errorf("status does not mark w2 and w3 failed: %+v", st.Failed)
	}
}

// A worker reports that it finished the run (it cannot write done); the
// coordinator marks the run done with that summary and exits.
func TestCoordinatorExitsWhenDone(t *testing.T) {
	e := startEtcd(t)
	cl := newTestClient(t, e, "done")
	cfg := TestConfig(e.Endpoints(), "done", "c1")
	cfg.Logger = zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	ctx := testCtx(t, 20*time.Second)
	go func() { errc <- c.Run(ctx) }()
	waitFor(t, 10*time.Second, "c1 leads", c.IsLeader)
	if err := cl.ReportFinished(ctx, "w1", train.Summary{Step: 5, ParamsSHA256: "abc"}); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errc:
		if err != nil {
			t.Fatalf("Run = %v, want nil when done", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after done")
	}
	if sum, ok, err := cl.Done(ctx); err != nil || !ok || sum.Step != 5 || sum.ParamsSHA256 != "abc" {
		t.Fatalf("done = %+v %v %v, want the worker's summary", sum, ok, err)
	}
	if cs, _ := cl.Coordinators(ctx); len(cs) != 0 {
		t.Errorf("registration left behind: %+v", cs)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(*Config)
	}{
		{"no etcd", func(c *Config) { c.Etcd = nil }},
		{"run with slash", func(c *Config) { c.Run = "a/b" }},
		{"no id", func(c *Config) { c.ID = "" }},
		{"bad gossip", func(c *Config) { c.GossipBind = "nope" }},
		{"short ttl", func(c *Config) { c.LeaseTTL = time.Millisecond }},
		{"max below min", func(c *Config) { c.Spec.MinWorkers, c.Spec.MaxWorkers = 3, 2 }},
		{"no gossip key", func(c *Config) { c.GossipKey = nil }},
		{"short gossip key", func(c *Config) { c.GossipKey = make([]byte, 8) }},
	} {
		cfg := TestConfig([]string{"127.0.0.1:1"}, "r", "c")
		tc.mod(&cfg)
		if err := cfg.Validate(); err == nil {
			t.Errorf("%s: no error", tc.name)
		}
	}
	if err := TestConfig([]string{"x:1"}, "r", "c").Validate(); err != nil {
		t.Errorf("TestConfig invalid: %v", err)
	}
	err := DefaultConfig().Validate()
	if !usage.Is(err) || !strings.Contains(err.Error(), "--gossip-key-file") {
		t.Errorf("DefaultConfig without a key: %v, want a usage error naming --gossip-key-file", err)
	}
	insecure := DefaultConfig()
	insecure.Insecure = true
	if err := insecure.Validate(); err != nil {
		t.Errorf("DefaultConfig with Insecure invalid: %v", err)
	}
	withFile := DefaultConfig()
	withFile.GossipKeyFile = filepath.Join(t.TempDir(), "missing")
	withFile.ListenGRPC = "" // no gRPC server: no certificate needed
	if _, err := New(withFile); !usage.Is(err) || !strings.Contains(err.Error(), withFile.GossipKeyFile) {
		t.Errorf("New with a missing key file: %v, want a usage error naming it", err)
	}
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A failure report blaming a member whose ring port is closed (the process
// is gone) fails it at once: the next generation leaves it out without
// waiting for gossip or its lease (10 s here).
func TestCoordinatorProbesBlamedMember(t *testing.T) {
	run := "probe"
	e, cl, gens := startRun(t, run)
	runCoordinator(t, TestConfig(e.Endpoints(), run, "c1"))
	register(t, cl, "w1", 10*time.Second)
	_, lis := registerListening(t, cl, "w2", 10*time.Second)
	g := gens.until(10*time.Second, "w1", "w2")
	lis.Close()
	ctx := testCtx(t, 10*time.Second)
	start := time.Now()
	if err := cl.ReportFailure(ctx, cluster.Failure{Reporter: "w1", Gen: g.Gen, Suspect: "w2", Error: "recv chunk 1 from rank 1: connection reset"}); err != nil {
		t.Fatal(err)
	}
	g2 := gens.until(5*time.Second, "w1")
	if g2.Gen != g.Gen+1 {
		t.Fatalf("after the report: %s, want gen %d [w1]", g2, g.Gen+1)
	}
	t.Logf("the survivors' generation came %v after the report", time.Since(start))
}

// TestCoordinatorRingFailure: a worker's failure report about the current
// generation makes a new one with the same members; stale reports do not.
func TestCoordinatorRingFailure(t *testing.T) {
	run := "ringfail"
	e, cl, gens := startRun(t, run)
	runCoordinator(t, TestConfig(e.Endpoints(), run, "c1"))
	register(t, cl, "w1", 10*time.Second)
	register(t, cl, "w2", 10*time.Second)
	g := gens.until(10*time.Second, "w1", "w2")
	ctx := testCtx(t, 10*time.Second)
	if err := cl.ReportFailure(ctx, cluster.Failure{Reporter: "w1", Gen: g.Gen, Suspect: "w2", Error: "recv chunk 1 from rank 1: timeout"}); err != nil {
		t.Fatal(err)
	}
	g2 := gens.until(10*time.Second, "w1", "w2")
	if g2.Gen != g.Gen+1 {
		t.Fatalf("after a failure report: %s, want gen %d", g2, g.Gen+1)
	}
	// Reports about the old generation change nothing.
	if err := cl.ReportFailure(ctx, cluster.Failure{Reporter: "w2", Gen: g.Gen}); err != nil {
		t.Fatal(err)
	}
	select {
	case g3 := <-gens.gens:
		t.Fatalf("a stale report made %s", g3)
	case <-time.After(500 * time.Millisecond):
	}
}

// TestCoordinatorHTTPReadOnlyWithToken: with a token, every path but
// /healthz needs it, /healthz without it says only that the process is up,
// and no path takes a method that could change anything. By default the
// HTTP server listens on loopback only.
func TestCoordinatorHTTPReadOnlyWithToken(t *testing.T) {
	if host, _, _ := net.SplitHostPort(DefaultConfig().HTTPAddr); host != "127.0.0.1" {
		t.Errorf("default --http-addr %q, want one on 127.0.0.1", DefaultConfig().HTTPAddr)
	}
	run := "http"
	e := startEtcd(t)
	cfg := TestConfig(e.Endpoints(), run, "c1")
	cfg.HTTPToken = "s3cret-s3cret-s3cret"
	c, _ := runCoordinator(t, cfg)
	waitFor(t, 10*time.Second, "c1 leads", c.IsLeader)
	base := "http://" + c.Status().HTTPAddr
	do := func(method, path, token string) (int, string) {
		t.Helper()
		req, err := http.NewRequest(method, base+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, p := range []string{"/", "/metrics", "/api/snapshot", "/static/app.js"} {
		if code, _ := do("GET", p, ""); code != http.StatusUnauthorized {
			t.Errorf("GET %s without the token: %d, want 401", p, code)
		}
		if code, _ := do("GET", p, "wrong-wrong-wrong-wrong"); code != http.StatusUnauthorized {
			t.Errorf("GET %s with a wrong token: %d, want 401", p, code)
		}
		for _, m := range []string{"POST", "PUT", "DELETE", "PATCH"} {
			if code, _ := do(m, p, cfg.HTTPToken); code != http.StatusMethodNotAllowed {
				t.Errorf("%s %s: %d, want 405", m, p, code)
			}
		}
	}
	if code, body := do("GET", "/metrics", cfg.HTTPToken); code != http.StatusOK || !strings.Contains(body, "# TYPE") {
		t.Errorf("GET /metrics with the token: %d %.80q", code, body)
	}
	if code, body := do("GET", "/healthz", ""); code != http.StatusOK || body != "ok\n" {
		t.Errorf("GET /healthz without the token: %d %q, want health only", code, body)
	}
	if code, body := do("GET", "/healthz", cfg.HTTPToken); code != http.StatusOK || !strings.Contains(body, `"leader":true`) {
		t.Errorf("GET /healthz with the token: %d %q", code, body)
	}
}

// Workers report checkpoints and fingerprints under their own keys; the
// coordinator publishes the highest checkpoint as the run's pointer (never
// going back to a lower step), records the event, and stores the first
// stated fingerprint as the run's (a later, different one does not replace it).
func TestCoordinatorPromotesWorkerReports(t *testing.T) {
	e := startEtcd(t)
	cl := newTestClient(t, e, "promote")
	cfg := TestConfig(e.Endpoints(), "promote", "c1")
	cfg.Logger = zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))
	cfg.Spec.MinWorkers = 5 // no generation: only the reports matter here
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t, 30*time.Second)
	rctx, cancel := context.WithCancel(ctx)
	errc := make(chan error, 1)
	go func() { errc <- c.Run(rctx) }()
	defer func() { cancel(); <-errc }()

	// A report made before the coordinator watched is taken too.
	if err := cl.ReportCheckpoint(ctx, "w1", cluster.CheckpointRef{Step: 10, Dir: "/w1/root/step-00000010", Gen: 1}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "pointer at step 10", func() bool {
		ref, ok, _ := cl.LatestCheckpoint(ctx)
		return ok && ref.Step == 10 && ref.Dir == "step-00000010"
	})
	if err := cl.ReportCheckpoint(ctx, "w2", cluster.CheckpointRef{Step: 30, Dir: "step-00000030", Gen: 2}); err != nil {
		t.Fatal(err)
	}
	if err := cl.ReportCheckpoint(ctx, "w1", cluster.CheckpointRef{Step: 20, Dir: "step-00000020", Gen: 2}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "pointer at step 30", func() bool {
		ref, ok, _ := cl.LatestCheckpoint(ctx)
		return ok && ref.Step == 30
	})
	waitFor(t, 10*time.Second, "checkpoint event", func() bool {
		evs, _ := cl.Events(ctx, 0)
		for _, ev := range evs {
			if ev.Kind == "checkpoint" && ev.Who == "w2" && ev.Step == 30 {
				return true
			}
		}
		return false
	})
	time.Sleep(200 * time.Millisecond) // w1's step 20 had its chance to (wrongly) win
	if ref, _, _ := cl.LatestCheckpoint(ctx); ref.Step != 30 {
		t.Fatalf("pointer went back to step %d", ref.Step)
	}

	// The first registration that states a fingerprint sets the run's.
	fp := train.Fingerprint{GEMM: "go", Kernel: "generic", Threads: 1, GOARCH: "amd64", Data: "aa"}
	reg, err := cl.Register(ctx, cluster.WorkerInfo{ID: "w1", Addr: "x", Fingerprint: fp}, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	waitFor(t, 10*time.Second, "the run's fingerprint", func() bool {
		got, ok, _ := cl.Fingerprint(ctx)
		return ok && got == fp
	})
	other := fp
	other.Threads = 4
	reg2, err := cl.Register(ctx, cluster.WorkerInfo{ID: "w2", Addr: "y", Fingerprint: other}, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer reg2.Close()
	time.Sleep(200 * time.Millisecond)
	if got, _, _ := cl.Fingerprint(ctx); got != fp {
		t.Fatalf("the run's fingerprint became %+v", got)
	}
}
