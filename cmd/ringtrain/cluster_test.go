package main

// Fault-tolerance tests with real processes: the ringtrain binary runs as
// etcd, coordinators and workers on loopback, and the tests kill, pause and
// restart them.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/ringtrain/ringtrain/cluster"
	"github.com/ringtrain/ringtrain/internal/pki"
	"github.com/ringtrain/ringtrain/train"
)

var ringtrainBin string // built once by TestMain

func TestMain(m *testing.M) {
	if spec := os.Getenv(rogueEnv); spec != "" {
		if err := rogue(spec); err != nil {
			fmt.Fprintln(os.Stderr, "rogue:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	if spec := os.Getenv(gossipRogueEnv); spec != "" {
		if err := gossipRogue(spec); err != nil {
			fmt.Fprintln(os.Stderr, "gossip rogue:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	dir, err := os.MkdirTemp("", "ringtrain-bin-")
	if err != nil {
		panic(err)
	}
	ringtrainBin = filepath.Join(dir, "ringtrain")
	out, err := exec.Command("go", "build", "-o", ringtrainBin, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build ringtrain: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// missingTool ends a test that needs a tool this machine lacks: what says
// which tool and why it cannot run, install the command that installs it.
// The test is skipped, except in CI ($CI set), whose machine is meant to
// have every tool the tests need: there it fails instead, so that a
// missing tool cannot turn part of the suite into silent skips.
func missingTool(t testing.TB, what, install string) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("%s; CI ($CI is set) must have it, install with: %s", what, install)
	}
	t.Skipf("%s (install with: %s)", what, install)
}

// proc is a ringtrain process with its output in a log file.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error
}

func startProc(t *testing.T, dir, name string, args ...string) *proc {
	t.Helper()
	return startBinary(t, ringtrainBin, dir, name, args...)
}

func startBinary(t *testing.T, bin, dir, name string, args ...string) *proc {
	t.Helper()
	logPath := filepath.Join(dir, name+".log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			lines := strings.Split(string(b), "\n")
			if len(lines) > 40 {
				lines = lines[len(lines)-40:]
			}
			t.Logf("--- %s (last lines) ---\n%s", name, strings.Join(lines, "\n"))
		}
	})
	return p
}

func (p *proc) kill() {
	p.cmd.Process.Kill()
	<-p.done
}

func (p *proc) signal(s syscall.Signal) { p.cmd.Process.Signal(s) }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// testCluster is etcd, coordinators and workers of one run.
type testCluster struct {
	t        *testing.T
	dir      string
	etcd     *proc
	endpoint string
	ckpt     string
	trainArg []string
	coords   map[string]*proc
	workers  map[string]*proc
	run      *cluster.Client
	// stockEtcd runs Debian's etcd server binary instead of `ringtrain etcd`.
	stockEtcd string
}

func newCluster(t *testing.T, trainArgs ...string) *testCluster {
	t.Helper()
	return newClusterEtcd(t, "", trainArgs...)
}

func newClusterEtcd(t *testing.T, stockEtcd string, trainArgs ...string) *testCluster {
	t.Helper()
	dir := t.TempDir()
	c := &testCluster{t: t, dir: dir, ckpt: filepath.Join(dir, "checkpoints"), trainArg: trainArgs,
		coords: map[string]*proc{}, workers: map[string]*proc{}, stockEtcd: stockEtcd}
	if _, err := cluster.WriteGossipKeyFile(filepath.Join(dir, "gossip.key")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := issueCerts(filepath.Join(dir, "certs"), cluster.DefaultRun, nil, pki.IssueOptions{}, false); err != nil {
		t.Fatal(err)
	}
	c.startEtcd()
	c.connect()
	return c
}

// connect points c.run at the cluster's etcd.
func (c *testCluster) connect() {
	c.t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{c.endpoint}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { cli.Close() })
	c.run = cluster.NewClient(cli, cluster.DefaultRun, zap.NewNop())
}

func (c *testCluster) startEtcd() {
	cport, pport := freePort(c.t), freePort(c.t)
	c.endpoint = fmt.Sprintf("http://127.0.0.1:%d", cport)
	peer := fmt.Sprintf("http://127.0.0.1:%d", pport)
	args := []string{"--name", "e1", "--data-dir", filepath.Join(c.dir, "etcd"),
		"--listen-client-urls", c.endpoint, "--advertise-client-urls", c.endpoint,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer, "--initial-cluster", "e1=" + peer}
	if c.stockEtcd != "" {
		c.etcd = startBinary(c.t, c.stockEtcd, c.dir, "etcd", args...)
		return
	}
	c.etcd = startProc(c.t, c.dir, "etcd", append([]string{"etcd"}, args...)...)
}

func (c *testCluster) startCoordinator(id string) *proc {
	args := append([]string{"coordinator", "--etcd", c.endpoint, "--id", id, "--listen", "127.0.0.1:0",
		"--gossip-listen", "127.0.0.1:0", "--gossip-key-file", filepath.Join(c.dir, "gossip.key"), "--tls-dir", c.issue(pki.Coordinator(cluster.DefaultRun, id)),
		"--http-addr", "", "--checkpoint-dir", c.ckpt, "--hash-every", "50"}, c.trainArg...)
	p := startProc(c.t, c.dir, id, args...)
	c.coords[id] = p
	return p
}

// tlsDir issues (or re-issues) worker id's certificate from the cluster's
// CA and returns its --tls-dir.
func (c *testCluster) tlsDir(id string) string {
	c.t.Helper()
	return c.issue(pki.Worker(cluster.DefaultRun, id))
}

// issue issues (or re-issues) who's certificate from the cluster's CA and
// returns its --tls-dir.
func (c *testCluster) issue(who pki.Identity) string {
	c.t.Helper()
	certs := filepath.Join(c.dir, "certs")
	if _, _, err := issueCerts(certs, cluster.DefaultRun, []pki.Identity{who}, pki.IssueOptions{}, true); err != nil {
		c.t.Fatal(err)
	}
	return pki.LeafDir(certs, who)
}

func (c *testCluster) startWorker(id string) *proc {
	p := startProc(c.t, c.dir, id, "worker", "--etcd", c.endpoint, "--id", id, "--listen", "127.0.0.1:0",
		"--gossip-listen", "127.0.0.1:0", "--gossip-key-file", filepath.Join(c.dir, "gossip.key"), "--tls-dir", c.tlsDir(id),
		"--http-addr", "", "--checkpoint-dir", c.ckpt, "--peer-timeout", "3s", "--lease-ttl", "5s", "--step-log", filepath.Join(c.dir, id+".steps.jsonl"))
	c.workers[id] = p
	return p
}

// poll calls get (each call bounded to a second) every interval until it
// reports ok or within has passed.
func poll[T any](within, every time.Duration, get func(context.Context) (T, bool)) (T, bool) {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		v, ok := get(ctx)
		cancel()
		if ok {
			return v, true
		}
		time.Sleep(every)
	}
	var zero T
	return zero, false
}

// waitStep waits until the ring has published progress at or past step.
func (c *testCluster) waitStep(step int64, within time.Duration) cluster.Progress {
	c.t.Helper()
	p, ok := poll(within, 50*time.Millisecond, func(ctx context.Context) (cluster.Progress, bool) {
		p, ok, _ := c.run.Progress(ctx)
		return p, ok && p.Step >= step
	})
	if !ok {
		c.t.Fatalf("the ring did not reach step %d within %v", step, within)
	}
	return p
}

// waitDone waits for the run's final summary.
func (c *testCluster) waitDone(within time.Duration) train.Summary {
	c.t.Helper()
	s, ok := poll(within, 100*time.Millisecond, func(ctx context.Context) (train.Summary, bool) {
		s, ok, _ := c.run.Done(ctx)
		return s, ok
	})
	if !ok {
		c.t.Fatalf("the run did not finish within %v", within)
	}
	return s
}

func (c *testCluster) generation() cluster.Generation {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	g, _, err := c.run.Generation(ctx)
	if err != nil {
		c.t.Fatal(err)
	}
	return g
}

// waitGeneration waits for a generation that satisfies ok.
func (c *testCluster) waitGeneration(within time.Duration, ok func(cluster.Generation) bool) cluster.Generation {
	c.t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if g := c.generation(); ok(g) {
			return g
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.t.Fatalf("no such generation within %v; last %v", within, c.generation())
	return cluster.Generation{}
}

// stepRecord is one line of a worker's step log.
type stepRecord struct {
	Event string  `json:"event"`
	Gen   uint64  `json:"gen"`
	Rank  int     `json:"rank"`
	Step  int64   `json:"step"`
	From  int     `json:"from"`
	Loss  float64 `json:"loss"`
}

func readStepLog(t *testing.T, path string) []stepRecord {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []stepRecord
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var r stepRecord
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			continue // a line cut by kill -9
		}
		out = append(out, r)
	}
	return out
}

// checkStepLogs checks the record of every worker: within a worker, each
// applied step is the one after its state (no gap); within one process a
// state transfer never moves the worker back and no step is applied twice;
// a new process of the same worker (a restart, a resume) may start from a
// lower step and apply steps again, right after its first sync and only
// until it has caught up; together the workers applied every step from first
// to last. Workers that applied the same step in the same generation saw the
// same loss.
func (c *testCluster) checkStepLogs(first, last int64) {
	c.t.Helper()
	checkStepRecords(c.t, c.dir, slices.Collect(maps.Keys(c.workers)), first, last)
}

func checkStepRecords(t *testing.T, dir string, workers []string, first, last int64) {
	t.Helper()
	applied := map[int64]bool{}
	loss := map[[2]int64]float64{}
	for _, id := range workers {
		recs := readStepLog(t, filepath.Join(dir, id+".steps.jsonl"))
		state := int64(-1)       // unknown until the first sync
		newest := int64(-1)      // the highest step this worker applied
		replayUntil := int64(-1) // after a new process's sync back: steps up to newest may repeat
		fresh := false           // a new process that has applied no step yet
		for _, r := range recs {
			switch r.Event {
			case "start":
				state, fresh = -1, true
			case "sync":
				if r.Step < state || (r.Step < newest && !fresh) {
					t.Fatalf("%s: a state transfer moved it back from step %d to %d within one process (gen %d)", id, max(state, newest), r.Step, r.Gen)
				}
				state = r.Step
				if r.Step < newest {
					replayUntil = newest
				}
			case "step":
				fresh = false
				if state >= 0 && r.Step != state+1 {
					t.Fatalf("%s applied step %d with its state at step %d (gen %d)", id, r.Step, state, r.Gen)
				}
				if r.Step <= newest && r.Step > replayUntil {
					t.Fatalf("%s applied step %d again (gen %d) without a sync back to a lower step", id, r.Step, r.Gen)
				}
				state, newest = r.Step, max(newest, r.Step)
				applied[r.Step] = true
				k := [2]int64{int64(r.Gen), r.Step}
				if l, ok := loss[k]; ok && l != r.Loss {
					t.Fatalf("step %d of gen %d: loss %v on %s, %v on another rank", r.Step, r.Gen, r.Loss, id, l)
				}
				loss[k] = r.Loss
			}
		}
	}
	var missing []int64
	for s := first; s <= last; s++ {
		if !applied[s] {
			missing = append(missing, s)
		}
	}
	if len(missing) > 0 {
		t.Fatalf("steps never applied by any worker: %v", missing[:min(len(missing), 20)])
	}
}

// proofArgs is the run of the exactness proofs: the default MLP on MNIST,
// exact, in micro-shards of 16 (8 a step, so each of up to 8 workers computes
// at least one micro-shard of every step).
var proofArgs = []string{"--steps", "1000", "--checkpoint-every", "100", "--checkpoint-keep", "20"}

var references sync.Map // strings.Join(args) → params_sha256 of `ringtrain train args`

// referenceHash is the params_sha256 of the undisturbed run: single-process
// `ringtrain train` with the same training flags.
func referenceHash(t *testing.T, args ...string) string {
	t.Helper()
	key := strings.Join(args, " ")
	if h, ok := references.Load(key); ok {
		return h.(string)
	}
	out, err := exec.Command(ringtrainBin, append([]string{"train", "--log-level", "error"}, args...)...).Output()
	if err != nil {
		t.Fatalf("reference run ringtrain train %s: %v", key, err)
	}
	var sum train.Summary
	if err := json.Unmarshal(out, &sum); err != nil || sum.ParamsSHA256 == "" {
		t.Fatalf("reference run: %v in %q", err, out)
	}
	references.Store(key, sum.ParamsSHA256)
	t.Logf("reference (ringtrain train %s): params_sha256 %s", key, sum.ParamsSHA256)
	return sum.ParamsSHA256
}

// newProofCluster is a cluster for proofArgs, whose reference is trained
// first, before the cluster loads the CPUs.
func newProofCluster(t *testing.T) *testCluster {
	t.Helper()
	referenceHash(t, proofArgs...)
	return newCluster(t, proofArgs...)
}

// startWorkers starts worker-1 … worker-n.
func (c *testCluster) startWorkers(n int) {
	for i := 1; i <= n; i++ {
		c.startWorker("worker-" + strconv.Itoa(i))
	}
}

// checkExact fails unless the run ended with the undisturbed run's model.
func (c *testCluster) checkExact(sum train.Summary) {
	c.t.Helper()
	var args []string // the training flags: the coordinator's own are not train's
	for i := 0; i < len(c.trainArg); i++ {
		switch c.trainArg[i] {
		case "--min-workers", "--max-workers", "--hash-every":
			i++
			continue
		}
		args = append(args, c.trainArg[i])
	}
	want := referenceHash(c.t, args...)
	if sum.ParamsSHA256 != want {
		c.t.Fatalf("params_sha256 %s after the faults, %s undisturbed (summary %+v)", sum.ParamsSHA256, want, sum)
	}
	c.t.Logf("params_sha256 %s, the undisturbed run's", want)
}

// The product's main promise, as an equality: kill -9 of a worker mid-step,
// the restarted worker rejoining, a worker frozen (SIGSTOP) past the peer
// timeout and thawed, etcd paused, and the leader coordinator killed, all in
// one run of the default MLP — and the final model is bit for bit the one of
// the undisturbed single-process run, with no step lost or applied twice.
func TestFaultsLeaveTheModelUnchanged(t *testing.T) {
	if testing.Short() {
		t.Skip("real processes")
	}
	c := newProofCluster(t)
	c.startCoordinator("coordinator-1")
	time.Sleep(300 * time.Millisecond) // coordinator-1 campaigns first
	c.startCoordinator("coordinator-2")
	c.startWorkers(3)
	g := c.waitGeneration(30*time.Second, func(g cluster.Generation) bool { return len(g.Members) == 3 })
	c.waitStep(60, 2*time.Minute)

	// kill -9 mid-step: the survivors' collective fails, they go on from
	// the most advanced state in the next generation.
	c.workers["worker-2"].kill()
	g = c.waitGeneration(15*time.Second, func(x cluster.Generation) bool { return x.Gen > g.Gen && x.Rank("worker-2") < 0 })
	t.Logf("after kill -9 of worker-2: %v", g)

	// The restarted worker rejoins at a step boundary and receives the state.
	c.startWorker("worker-2")
	g = c.waitGeneration(30*time.Second, func(x cluster.Generation) bool { return x.Gen > g.Gen && x.Rank("worker-2") >= 0 })
	t.Logf("worker-2 restarted and rejoined: %v", g)

	// Frozen past the peer timeout, then thawed: it is dropped, then rejoins.
	p := c.waitStep(0, time.Second)
	c.workers["worker-3"].signal(syscall.SIGSTOP)
	g = c.waitGeneration(30*time.Second, func(x cluster.Generation) bool { return x.Gen > g.Gen && x.Rank("worker-3") < 0 })
	c.workers["worker-3"].signal(syscall.SIGCONT)
	t.Logf("worker-3 frozen at step ~%d, dropped: %v", p.Step, g)
	g = c.waitGeneration(30*time.Second, func(x cluster.Generation) bool { return x.Gen > g.Gen && x.Rank("worker-3") >= 0 })
	t.Logf("worker-3 thawed and rejoined: %v", g)

	// etcd unreachable for a moment: the ring keeps its generation.
	c.etcd.signal(syscall.SIGSTOP)
	time.Sleep(time.Second)
	c.etcd.signal(syscall.SIGCONT)
	if g2 := c.generation(); g2.Gen != g.Gen {
		t.Fatalf("an etcd pause changed the ring: %v -> %v", g, g2)
	}

	// The leader dies; the standby leads the next change (worker-1 leaves).
	leader := g.Leader
	c.coords[leader].kill()
	c.workers["worker-1"].signal(syscall.SIGTERM)
	g = c.waitGeneration(30*time.Second, func(x cluster.Generation) bool { return x.Gen > g.Gen && x.Leader != leader })
	t.Logf("leader %s killed: %s leads %v", leader, g.Leader, g)

	sum := c.waitDone(5 * time.Minute)
	if sum.Step != 1000 {
		t.Fatalf("the run ended at step %d, want 1000", sum.Step)
	}
	c.checkStepLogs(1, sum.Step)
	c.checkExact(sum)
}

// Scale 3 → 5 → 2: workers join at a step boundary and receive the state,
// SIGTERM makes three leave at a step boundary (no collective fails), and the
// model is the undisturbed run's.
func TestScaleUpAndDownLeavesTheModelUnchanged(t *testing.T) {
	if testing.Short() {
		t.Skip("real processes")
	}
	c := newProofCluster(t)
	c.startCoordinator("coordinator-1")
	c.startWorkers(3)
	g := c.waitGeneration(30*time.Second, func(g cluster.Generation) bool { return len(g.Members) == 3 })
	c.waitStep(60, 2*time.Minute)
	c.startWorker("worker-4")
	c.startWorker("worker-5")
	g = c.waitGeneration(30*time.Second, func(x cluster.Generation) bool { return x.Gen > g.Gen && len(x.Members) == 5 })
	t.Logf("scaled to 5: %v", g)
	c.waitStep(c.waitStep(0, time.Second).Step+40, time.Minute)
	for _, id := range []string{"worker-1", "worker-3", "worker-5"} {
		c.workers[id].signal(syscall.SIGTERM)
	}
	for _, id := range []string{"worker-1", "worker-3", "worker-5"} {
		w := c.workers[id]
		select {
		case <-w.done:
		case <-time.After(20 * time.Second):
			t.Fatalf("%s did not exit within 20s of SIGTERM", id)
		}
		if w.err != nil {
			t.Fatalf("%s exited with %v after SIGTERM, want status 0", id, w.err)
		}
	}
	g = c.waitGeneration(30*time.Second, func(x cluster.Generation) bool { return x.Gen > g.Gen && len(x.Members) == 2 })
	t.Logf("scaled to 2: %v", g)
	sum := c.waitDone(5 * time.Minute)
	c.checkStepLogs(1, sum.Step)
	for _, id := range []string{"worker-2", "worker-4"} {
		b, _ := os.ReadFile(c.workers[id].log)
		if strings.Contains(string(b), "generation failed") {
			t.Fatalf("%s saw a failed generation; scaling must change the ring at a step boundary", id)
		}
	}
	c.checkExact(sum)
}

// After a full stop of every process, the run resumes on 2 workers from
// the checkpoint etcd points at — here corrupted, so it falls back, with a
// warning naming it, to the newest valid one in the directory — and ends
// with the model of the undisturbed run it began on 3 workers.
func TestFullStopResumesOnFewerWorkers(t *testing.T) {
	if testing.Short() {
		t.Skip("real processes")
	}
	c := newProofCluster(t)
	c.startCoordinator("coordinator-1")
	c.startWorkers(3)
	c.waitStep(450, 3*time.Minute)
	for _, p := range c.workers {
		p.kill()
	}
	for _, p := range c.coords {
		p.kill()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	ref, ok, err := c.run.LatestCheckpoint(ctx)
	cancel()
	if err != nil || !ok {
		t.Fatalf("no published checkpoint after the stop: %v", err)
	}
	c.etcd.kill()
	var genBefore uint64
	for id := range c.workers {
		for _, r := range readStepLog(t, filepath.Join(c.dir, id+".steps.jsonl")) {
			genBefore = max(genBefore, r.Gen)
		}
	}
	// Corrupt the published checkpoint; the resume falls back to the newest
	// valid checkpoint on disk.
	published := ref.Path(c.ckpt)
	model := filepath.Join(published, "model.safetensors")
	b, _ := os.ReadFile(model)
	b[len(b)/2] ^= 0x55
	os.WriteFile(model, b, 0o644)
	dirs, _ := filepath.Glob(filepath.Join(c.ckpt, "step-*"))
	sort.Strings(dirs)
	var fallback int64 = -1
	for i := len(dirs) - 1; i >= 0; i-- {
		if dirs[i] != published {
			fallback, _ = strconv.ParseInt(strings.TrimPrefix(filepath.Base(dirs[i]), "step-"), 10, 64)
			break
		}
	}

	c.startEtcd()
	c.connect()
	c.startCoordinator("coordinator-1")
	w1 := c.startWorker("worker-1")
	c.startWorker("worker-2")
	sum := c.waitDone(5 * time.Minute)
	if sum.Step != 1000 || sum.Workers != 2 {
		t.Fatalf("resumed run ended at step %d on %d workers, want 1000 on 2", sum.Step, sum.Workers)
	}
	time.Sleep(200 * time.Millisecond)
	logb, _ := os.ReadFile(w1.log)
	if !strings.Contains(string(logb), filepath.Base(published)) || !strings.Contains(string(logb), "not usable") {
		t.Fatalf("worker-1's log does not warn that the published checkpoint %s is not usable", published)
	}
	var resumedAt int64 = -1
	for _, id := range []string{"worker-1", "worker-2"} {
		for _, r := range readStepLog(t, filepath.Join(c.dir, id+".steps.jsonl")) {
			if r.Event == "sync" && r.Gen > genBefore && (resumedAt < 0 || r.Step < resumedAt) {
				resumedAt = r.Step
			}
		}
	}
	if resumedAt != fallback {
		t.Fatalf("after the restart the ring resumed at step %d, want the newest valid checkpoint's %d", resumedAt, fallback)
	}
	c.checkStepLogs(1, sum.Step)
	c.checkExact(sum)
}

// The cluster runs against a stock etcd server (the official one, built from
// its module by `make etcd-binary`), not only the embedded one.
func TestStockEtcdServer(t *testing.T) {
	if testing.Short() {
		t.Skip("real processes")
	}
	const bin = "../../bin/etcd"
	if _, err := os.Stat(bin); err != nil {
		missingTool(t, "the stock etcd server: "+err.Error(), "make etcd-binary")
	}
	c := newClusterEtcd(t, bin, "--layers", "784-32-10", "--steps", "400", "--batch", "64", "--checkpoint-every", "100", "--min-workers", "2")
	c.startCoordinator("coordinator-1")
	c.startWorker("worker-1")
	c.startWorker("worker-2")
	c.waitGeneration(30*time.Second, func(g cluster.Generation) bool { return len(g.Members) == 2 })
	sum := c.waitDone(2 * time.Minute)
	if sum.Step != 400 || sum.TestAccuracy < 0.85 {
		t.Fatalf("summary %+v: want step 400 and accuracy ≥ 0.85", sum)
	}
	c.checkStepLogs(1, sum.Step)
	c.checkExact(sum)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if ref, ok, err := c.run.LatestCheckpoint(ctx); err != nil || !ok || ref.Step != 400 {
		t.Fatalf("latest checkpoint in etcd: %+v %v %v, want step 400", ref, ok, err)
	}
}
