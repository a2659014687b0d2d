package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// The workers of `ringtrain local`, supervised: restarted with backoff when
// they crash, as compose's restart policy or a Kubernetes controller would.

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
