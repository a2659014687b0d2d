package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/ringtrain/ringtrain/cluster"
	"github.com/ringtrain/ringtrain/coordinator"
	"github.com/ringtrain/ringtrain/internal/usage"
	"github.com/ringtrain/ringtrain/train"
)

func init() {
	register("local", "run a whole cluster on this machine: embedded etcd, a coordinator, N worker processes", runLocal)
}

// localFlags are `ringtrain local`'s own flags, besides the training flags.
type localFlags struct {
	workers     int
	minWorkers  int
	hashEvery   int
	httpAddr    string
	peerTimeout time.Duration
	keep        bool
	workDir     string
	restart     bool
	logs        logFlags
}

func (l *localFlags) register(fs *flag.FlagSet) {
	fs.IntVar(&l.workers, "workers", 3, "worker processes to start")
	fs.IntVar(&l.minWorkers, "min-workers", 1, "below this many live workers the run waits")
	fs.IntVar(&l.hashEvery, "hash-every", 100, "compare a parameter hash across the ring every N steps (0: off)")
	fs.StringVar(&l.httpAddr, "http-addr", "", "serve the coordinator's dashboard and /metrics here, e.g. 127.0.0.1:8080")
	fs.DurationVar(&l.peerTimeout, "peer-timeout", 5*time.Second, "bound on waiting for a peer inside a collective")
	fs.BoolVar(&l.keep, "keep", false, "keep the working directory (etcd data, worker logs, step logs)")
	fs.StringVar(&l.workDir, "work-dir", "", "working directory (default: a new temporary directory)")
	fs.BoolVar(&l.restart, "restart", true, "restart a crashed worker (killed by a signal, or an exit status other than 0 and 2) with the same\n"+
		"--id, after a backoff from 0.5s doubling to 8s; a worker that exits 2 rejected its input and stays down")
	l.logs.register(fs)
}

func runLocal(ctx context.Context, e *env, args []string) error {
	fs := e.newFlagSet("Runs a local cluster: embedded etcd, a coordinator and --workers worker processes of this binary,\n" +
		"training the run given by the training flags (--batch is the global minibatch).")
	cfg := train.DefaultConfig()
	var lf localFlags
	if err := train.ParseArgs(fs, args, &cfg, lf.register); err != nil {
		return err
	}
	if lf.workers < 1 {
		return usage.Errorf("--workers %d must be at least 1", lf.workers)
	}
	spec := cluster.RunSpec{Config: cfg.Spec, MinWorkers: lf.minWorkers, HashEvery: lf.hashEvery}
	if err := spec.Validate(); err != nil {
		return err
	}
	if cfg.Batch < lf.workers {
		return usage.Errorf("--batch %d is smaller than --workers %d; every worker needs at least one example per step", cfg.Batch, lf.workers)
	}
	log, err := lf.logs.logger(e.stderr)
	if err != nil {
		return err
	}
	defer log.Sync()

	dir := lf.workDir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "ringtrain-local-"); err != nil {
			return err
		}
		if !lf.keep {
			defer os.RemoveAll(dir)
		}
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	tempCheckpoints := cfg.CheckpointDir == "" && lf.workDir == "" && !lf.keep
	if cfg.CheckpointDir == "" {
		cfg.CheckpointDir = filepath.Join(dir, "checkpoints")
	}

	etcd, err := cluster.StartEtcd(cluster.EtcdConfig{Name: "local", Dir: filepath.Join(dir, "etcd"), Fast: true,
		ListenClientURLs: "http://127.0.0.1:0", ListenPeerURLs: "http://127.0.0.1:0"})
	if err != nil {
		return err
	}
	defer etcd.Close()
	endpoints := etcd.Endpoints()
	log.Info("etcd started", zap.Strings("endpoints", endpoints), zap.String("dir", dir))

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	ccfg := coordinator.DefaultConfig()
	ccfg.Etcd = endpoints
	ccfg.ID = "coordinator-local"
	ccfg.ListenGRPC = "127.0.0.1:0"
	ccfg.GossipBind = "127.0.0.1:0"
	ccfg.HTTPAddr = lf.httpAddr
	ccfg.Spec = spec
	ccfg.CheckpointDir = cfg.CheckpointDir
	ccfg.Logger = log.Named("coordinator")
	coord, err := coordinator.New(ccfg)
	if err != nil {
		return err
	}
	coordDone := make(chan error, 1)
	go func() { coordDone <- coord.Run(ctx) }()
	defer func() {
		cancel()
		<-coordDone
	}()

	level := lf.logs.level
	if level == "" {
		level = "info"
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	procs := newProcGroup(ctx, self, lf.restart, e.stderr)
	defer procs.stop(10 * time.Second)
	for i := 1; i <= lf.workers; i++ {
		id := "worker-" + strconv.Itoa(i)
		args := []string{"worker", "--etcd", endpoints[0], "--run", ccfg.Run, "--id", id,
			"--listen", "127.0.0.1:0", "--gossip-listen", "127.0.0.1:0", "--http-addr", "",
			"--checkpoint-dir", cfg.CheckpointDir, "--data", cfg.Data, "--init", cfg.Init, "--threads", strconv.Itoa(cfg.Threads),
			"--peer-timeout", lf.peerTimeout.String(),
			"--log-level", level, "--step-log", filepath.Join(dir, id+".steps.jsonl")}
		if err := procs.start(id, args, filepath.Join(dir, id+".log")); err != nil {
			return err
		}
	}
	if lf.httpAddr != "" {
		fmt.Fprintf(e.stderr, "dashboard: http://%s/\n", lf.httpAddr)
	}

	cli, err := clientv3.New(cluster.EtcdClientConfig(endpoints, zap.NewNop()))
	if err != nil {
		return err
	}
	defer cli.Close()
	run := cluster.NewClient(cli, ccfg.Run, log)
	start := time.Now()
	sum, err := follow(ctx, e, run, procs, coordDone, log)
	if err != nil {
		if lf.keep || lf.workDir != "" {
			fmt.Fprintf(e.stderr, "logs kept in %s\n", dir)
		}
		return err
	}
	// The whole run as this command saw it, start-up included.
	sum.Seconds = roundTo(time.Since(start).Seconds(), 3)
	if tempCheckpoints {
		// Removed with the working directory on return.
		sum.Checkpoint = ""
		fmt.Fprintln(e.stderr, "checkpoints were temporary; pass --checkpoint-dir DIR (or --keep) to keep them")
	}
	return json.NewEncoder(e.stdout).Encode(sum)
}

// follow shows the run's progress until it is done, every worker has
// exited, or ctx ends.
func follow(ctx context.Context, e *env, run *cluster.Client, procs *procGroup, coordDone <-chan error, log *zap.Logger) (train.Summary, error) {
	var bar *train.Progress
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	done := run.WatchDone(ctx)
	var last cluster.Progress
	for {
		select {
		case <-ctx.Done():
			return train.Summary{}, ctx.Err()
		case err := <-coordDone:
			return train.Summary{}, fmt.Errorf("coordinator stopped: %v", err)
		case s, ok := <-done:
			if !ok {
				return train.Summary{}, ctx.Err()
			}
			if bar != nil {
				bar.Update(s.Step, s.TrainLoss)
				bar.Finish()
			}
			return s, nil
		case <-tick.C:
			if procs.running() == 0 {
				// The done key may have landed just before the last exit.
				if s, ok, err := run.Done(ctx); err == nil && ok {
					return s, nil
				}
				if line := procs.rejection(); line != "" {
					// Every worker is down and one said why: its one clear line.
					return train.Summary{}, usage.New(line)
				}
				return train.Summary{}, errors.New("every worker exited before the run finished; see the worker logs")
			}
			p, ok, err := run.Progress(ctx)
			if err != nil || !ok || p.Step == last.Step {
				continue
			}
			last = p
			if isTerminal(e.stderr) {
				if bar == nil {
					bar = train.NewProgress(e.stderr, p.TotalSteps)
				}
				bar.Update(p.Step, p.Loss)
			} else {
				log.Info("progress", zap.Uint64("gen", p.Gen), zap.Int64("step", p.Step), zap.Int64("total", p.TotalSteps),
					zap.Int("workers", p.Workers), zap.Float64("loss", p.Loss), zap.Float64("samples_per_sec", p.SamplesPerSec))
			}
		}
	}
}

// Restart backoff, as Kubernetes does it for a crashing container: the first
// restart after restartMin, each next one after twice the previous delay up
// to restartMax, and back to restartMin once a worker has stayed up for
// restartReset.
const (
	restartMin   = 500 * time.Millisecond
	restartMax   = 8 * time.Second
	restartReset = 30 * time.Second
)

// restartDelay is the wait before the next restart of a worker whose
// previous restart waited prev (0: none yet) and which then ran for uptime.
func restartDelay(prev, uptime time.Duration) time.Duration {
	if prev == 0 || uptime >= restartReset {
		return restartMin
	}
	return min(2*prev, restartMax)
}

// exitStatus is how a worker process ended, as the restart policy sees it.
type exitStatus int

const (
	exitOK       exitStatus = iota // status 0: the run finished, or the worker was asked to leave
	exitRejected                   // status 2: the worker rejected its input; a restart would fail the same way
	exitFailed                     // killed by a signal or any other status: a crash, restarted
)

// classifyExit maps cmd.Wait's error to an exitStatus and a description
// ("signal: killed", "exit status 1").
func classifyExit(err error) (exitStatus, string) {
	var ee *exec.ExitError
	switch {
	case err == nil:
		return exitOK, "exit status 0"
	case errors.As(err, &ee) && ee.ExitCode() == 2:
		return exitRejected, ee.Error()
	default:
		return exitFailed, err.Error()
	}
}

// procGroup owns the worker processes. Each worker has one goroutine, owned
// by the group and joined by stop, that waits for its process and, with
// restart on, starts it again with the same arguments when it crashes (as
// compose's `restart: on-failure`). The processes die with this one
// (Pdeathsig) and are stopped by stop.
type procGroup struct {
	path    string
	restart bool
	stderr  io.Writer          // a line per start, restart and rejection
	ctx     context.Context    // ends when the group stops: no more restarts
	cancel  context.CancelFunc //
	wg      sync.WaitGroup     // the supervising goroutines

	mu       sync.Mutex
	cur      map[string]*exec.Cmd // each worker's running process
	alive    int                  // workers running or waiting to be restarted
	rejected string               // the last line of the last worker that exited 2
}

// workerProc is what it takes to start one worker again.
type workerProc struct {
	id   string
	args []string
	log  string // stdout and stderr of every run of it, appended
}

// errStopped is launch's answer once the group stops.
var errStopped = errors.New("local: stopping; no more restarts")

func newProcGroup(ctx context.Context, path string, restart bool, stderr io.Writer) *procGroup {
	ctx, cancel := context.WithCancel(ctx)
	return &procGroup{path: path, restart: restart, stderr: stderr, ctx: ctx, cancel: cancel, cur: map[string]*exec.Cmd{}}
}

// start starts worker id and the goroutine that supervises it.
func (g *procGroup) start(id string, args []string, logPath string) error {
	w := &workerProc{id: id, args: args, log: logPath}
	cmd, logf, err := g.launch(w, 0, "")
	if err != nil {
		return err
	}
	g.mu.Lock()
	g.alive++
	g.mu.Unlock()
	g.wg.Add(1)
	go g.supervise(w, cmd, logf)
	return nil
}

// launch starts run n of w (0: the first), its output going to w.log
// (truncated for the first run, appended to after a line that says why for
// the others). It fails with errStopped once the group stops, so stop sees
// every process that started.
func (g *procGroup) launch(w *workerProc, n int, why string) (*exec.Cmd, *os.File, error) {
	flags := os.O_CREATE | os.O_WRONLY | os.O_TRUNC
	if n > 0 {
		flags = os.O_CREATE | os.O_WRONLY | os.O_APPEND
	}
	f, err := os.OpenFile(w.log, flags, 0o644)
	if err != nil {
		return nil, nil, err
	}
	if n > 0 {
		fmt.Fprintf(f, "ringtrain local: restart %d of %s: %s\n", n, w.id, why)
	}
	cmd := exec.Command(g.path, w.args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	g.mu.Lock()
	if g.ctx.Err() != nil {
		err = errStopped
	} else if err = cmd.Start(); err == nil {
		g.cur[w.id] = cmd
	}
	g.mu.Unlock()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	if n == 0 {
		fmt.Fprintf(g.stderr, "started %s (pid %d), log %s\n", w.id, cmd.Process.Pid, w.log)
	} else {
		fmt.Fprintf(g.stderr, "restarted %s (pid %d, restart %d), log %s\n", w.id, cmd.Process.Pid, n, w.log)
	}
	return cmd, f, nil
}

// supervise waits for w's process and restarts it while it crashes, restart
// is on and the group has not stopped.
func (g *procGroup) supervise(w *workerProc, cmd *exec.Cmd, logf *os.File) {
	defer g.wg.Done()
	defer func() {
		g.mu.Lock()
		g.alive--
		g.mu.Unlock()
	}()
	var delay time.Duration
	for n := 1; ; n++ {
		started := time.Now()
		err := cmd.Wait()
		uptime := time.Since(started)
		logf.Close()
		g.mu.Lock()
		delete(g.cur, w.id)
		g.mu.Unlock()
		pid := cmd.Process.Pid
		st, desc := classifyExit(err)
		switch {
		case st == exitOK || g.ctx.Err() != nil:
			return
		case st == exitRejected:
			line := lastLine(w.log)
			if line == "" {
				line = fmt.Sprintf("%s exited with status 2; see its log %s", w.id, w.log)
			}
			g.mu.Lock()
			g.rejected = strings.TrimPrefix(line, "ringtrain worker: ")
			g.mu.Unlock()
			fmt.Fprintf(g.stderr, "%s (pid %d) exited with status 2, not restarted: %s\n", w.id, pid, line)
			return
		case !g.restart:
			fmt.Fprintf(g.stderr, "%s (pid %d) exited (%s), not restarted (--restart=false)\n", w.id, pid, desc)
			return
		}
		delay = restartDelay(delay, uptime)
		fmt.Fprintf(g.stderr, "%s (pid %d) exited (%s) after %v; restarting in %v\n",
			w.id, pid, desc, uptime.Round(time.Millisecond), delay)
		t := time.NewTimer(delay)
		select {
		case <-g.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		why := fmt.Sprintf("pid %d exited (%s)", pid, desc)
		if cmd, logf, err = g.launch(w, n, why); err != nil {
			if !errors.Is(err, errStopped) {
				fmt.Fprintf(g.stderr, "%s: restart failed, not restarted: %v\n", w.id, err)
			}
			return
		}
	}
}

// running is the number of workers running or waiting to be restarted.
func (g *procGroup) running() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.alive
}

// rejection is the last line of the last worker that exited with status 2
// (its one clear error), or "" if none did.
func (g *procGroup) rejection() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.rejected
}

// signal sends sig to every running process.
func (g *procGroup) signal(sig os.Signal) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, cmd := range g.cur {
		cmd.Process.Signal(sig)
	}
}

// stop ends restarts, sends SIGTERM to every worker, waits up to grace,
// then kills them and waits (bounded) for the kills to be reaped.
func (g *procGroup) stop(grace time.Duration) {
	g.cancel() // under no lock: launch checks it under g.mu, so every process started is in g.cur now
	all := make(chan struct{})
	go func() { g.wg.Wait(); close(all) }()
	g.signal(syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-all:
		return
	case <-t.C:
	}
	g.signal(syscall.SIGKILL)
	select {
	case <-all:
	case <-time.After(5 * time.Second): // a killed process is reaped at once; never wait forever
	}
}

// lastLine is the last non-empty line of the file at path ("" if none can
// be read): a worker's stderr ends with its error.
func lastLine(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	const tail = 4096
	if fi, err := f.Stat(); err == nil && fi.Size() > tail {
		f.Seek(fi.Size()-tail, io.SeekStart)
	}
	b, _ := io.ReadAll(io.LimitReader(f, tail))
	s := strings.TrimRight(string(b), " \t\r\n")
	return strings.TrimSpace(s[strings.LastIndexByte(s, '\n')+1:])
}

// listen opens a TCP listener, naming the flag value on error.
func listen(addr string) (net.Listener, error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, usage.Errorf("listen on %q: %v; pick a free host:port", addr, err)
	}
	return lis, nil
}
