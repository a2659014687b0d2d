package main

// `ringtrain local` as a user runs it: the binary as a process, its workers
// as processes of their own, killed with kill -9.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/train"
)

func TestRestartDelay(t *testing.T) {
	for _, tc := range []struct {
		prev, uptime, want time.Duration
	}{
		{0, 0, 500 * time.Millisecond},                              // the first restart
		{500 * time.Millisecond, time.Second, time.Second},          // doubles
		{4 * time.Second, time.Second, 8 * time.Second},             //
		{8 * time.Second, time.Second, 8 * time.Second},             // up to 8s
		{8 * time.Second, 29 * time.Second, 8 * time.Second},        //
		{8 * time.Second, 30 * time.Second, 500 * time.Millisecond}, // reset after 30s up
	} {
		if got := restartDelay(tc.prev, tc.uptime); got != tc.want {
			t.Errorf("restartDelay(%v, %v) = %v, want %v", tc.prev, tc.uptime, got, tc.want)
		}
	}
}

func TestClassifyExit(t *testing.T) {
	for _, tc := range []struct {
		script string
		want   exitStatus
		desc   string
	}{
		{"exit 0", exitOK, "exit status 0"},
		{"exit 2", exitRejected, "exit status 2"},
		{"exit 1", exitFailed, "exit status 1"},
		{"exit 130", exitFailed, "exit status 130"},
		{"kill -9 $$", exitFailed, "signal: killed"},
	} {
		st, desc := classifyExit(exec.Command("sh", "-c", tc.script).Run())
		if st != tc.want || desc != tc.desc {
			t.Errorf("%q: %v %q, want %v %q", tc.script, st, desc, tc.want, tc.desc)
		}
	}
	if st, _ := classifyExit(errors.New("wait: no child")); st != exitFailed {
		t.Errorf("an error that is not an exit: %v, want exitFailed", st)
	}
}

// localProc is `ringtrain local` running as a process, its stderr read line
// by line as it comes.
type localProc struct {
	cmd    *exec.Cmd
	stdout bytes.Buffer
	done   chan struct{} // closed once stderr is drained and the process reaped

	mu    sync.Mutex
	lines []string // stderr so far
}

func startLocal(t *testing.T, args ...string) *localProc {
	t.Helper()
	p := &localProc{done: make(chan struct{})}
	p.cmd = exec.Command(ringtrainBin, append([]string{"local"}, args...)...)
	p.cmd.Stdout = &p.stdout
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { // joined by wait, or by the cleanup below
		sc := bufio.NewScanner(stderr)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			p.mu.Lock()
			p.lines = append(p.lines, sc.Text())
			p.mu.Unlock()
		}
		p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			p.cmd.Process.Signal(os.Interrupt) // local stops its workers
			select {
			case <-p.done:
			case <-time.After(20 * time.Second):
				p.cmd.Process.Kill()
				<-p.done // a killed process is reaped at once and its pipe closes
			}
		}
		if t.Failed() {
			t.Logf("--- ringtrain local stderr ---\n%s", strings.Join(p.stderr(), "\n"))
		}
	})
	return p
}

func (p *localProc) stderr() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.lines...)
}

// waitLine waits until a line of stderr matches re and returns its submatches.
func (p *localProc) waitLine(t *testing.T, re string, within time.Duration) []string {
	t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.Now().Add(within)
	for {
		for _, l := range p.stderr() {
			if m := rx.FindStringSubmatch(l); m != nil {
				return m
			}
		}
		select {
		case <-p.done:
			t.Fatalf("ringtrain local exited (%v) without a line matching %q", p.cmd.ProcessState, re)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no line matching %q on stderr within %v", re, within)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// wait waits for the process to exit and returns its exit status.
func (p *localProc) wait(t *testing.T, within time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
		return p.cmd.ProcessState.ExitCode()
	case <-time.After(within):
		t.Fatalf("ringtrain local did not exit within %v", within)
		return -1
	}
}

// A worker that rejects its input exits 2 and is not restarted; local then
// exits 2 with that worker's one clear line.
func TestLocalRejectedInputExits2(t *testing.T) {
	if testing.Short() {
		t.Skip("real processes")
	}
	start := time.Now()
	p := startLocal(t, "--layers", "100-10", "--workers", "2", "--steps", "5", "--work-dir", t.TempDir())
	code := p.wait(t, 30*time.Second)
	t.Logf("exit %d after %v", code, time.Since(start).Round(time.Millisecond))
	const want = "--layers 100-10 takes 100 inputs but --data mnist has 784 features; make the first layer 784"
	lines := p.stderr()
	if code != 2 {
		t.Fatalf("exit %d, want 2", code)
	}
	if last := lines[len(lines)-1]; last != "ringtrain local: "+want {
		t.Fatalf("last line %q, want %q", last, "ringtrain local: "+want)
	}
	rejected := 0
	for _, l := range lines {
		if strings.HasPrefix(l, "restarted ") || strings.Contains(l, "restarting in") {
			t.Errorf("a worker that exited 2 was restarted: %q", l)
		}
		if strings.Contains(l, "exited with status 2, not restarted") && strings.HasSuffix(l, want) {
			rejected++
		}
	}
	if rejected != 2 {
		t.Fatalf("%d lines name a worker's rejection, want one per worker", rejected)
	}
}

// kill -9 of a worker: local restarts it with the same --id, it rejoins the
// ring, and the run finishes with every step applied once.
func TestLocalRestartsKilledWorker(t *testing.T) {
	if testing.Short() {
		t.Skip("real processes")
	}
	dir := t.TempDir()
	const steps = 5000 // a few seconds: long enough to be killed mid-run
	// --min-workers 2: the run can only finish once the restarted worker is back.
	p := startLocal(t, "--workers", "2", "--min-workers", "2", "--layers", "784-32-10", "--batch", "32",
		"--steps", strconv.Itoa(steps), "--checkpoint-every", "500", "--work-dir", dir)
	m := p.waitLine(t, `^started worker-1 \(pid (\d+)\), log (\S+)$`, 30*time.Second)
	pid, _ := strconv.Atoi(m[1])
	logPath := m[2]
	prog := p.waitLine(t, `"msg":"progress".*"step":(\d+)`, 60*time.Second)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	t.Logf("kill -9 worker-1 (pid %d) at step %s", pid, prog[1])
	p.waitLine(t, fmt.Sprintf(`^worker-1 \(pid %d\) exited \(signal: killed\) after \S+; restarting in 500ms$`, pid), 15*time.Second)
	m = p.waitLine(t, `^restarted worker-1 \(pid (\d+), restart 1\), log (\S+)$`, 15*time.Second)
	if m[1] == strconv.Itoa(pid) || m[2] != logPath {
		t.Fatalf("restarted as pid %s with log %s; want a new pid and the same log %s", m[1], m[2], logPath)
	}

	if code := p.wait(t, 60*time.Second); code != 0 {
		t.Fatalf("exit %d", code)
	}
	var sum train.Summary
	if err := json.Unmarshal(p.stdout.Bytes(), &sum); err != nil {
		t.Fatalf("summary %q: %v", p.stdout.String(), err)
	}
	if sum.Step != steps || sum.Workers != 2 {
		t.Fatalf("summary %+v: want step %d with 2 workers", sum, steps)
	}
	// The restarted process (its output follows local's marker in the same
	// log) registered and trained in a later generation than the first.
	b, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	before, after, ok := strings.Cut(string(b), "ringtrain local: restart 1 of worker-1: pid "+strconv.Itoa(pid)+" exited (signal: killed)\n")
	if !ok {
		t.Fatalf("%s has no restart marker", logPath)
	}
	first, again := ringGen(before), ringGen(after)
	if !strings.Contains(after, `"msg":"registered"`) || first < 0 || again <= first {
		t.Fatalf("worker-1 registered again: %v; ring formed in gen %d before the kill, gen %d after; want a later one",
			strings.Contains(after, `"msg":"registered"`), first, again)
	}
	c := &testCluster{t: t, dir: dir, workers: map[string]*proc{"worker-1": nil, "worker-2": nil}}
	c.checkStepLogs(1, steps)
}

// ringGen is the generation of the first "ring formed" line of a worker's
// log, or -1.
func ringGen(log string) int {
	m := regexp.MustCompile(`"msg":"ring formed".*?"gen":(\d+)`).FindStringSubmatch(log)
	if m == nil {
		return -1
	}
	g, _ := strconv.Atoi(m[1])
	return g
}

// --restart=false leaves a killed worker down, as before.
func TestLocalNoRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("real processes")
	}
	p := startLocal(t, "--workers", "1", "--restart=false", "--layers", "784-32-10", "--batch", "32",
		"--steps", "100000", "--work-dir", t.TempDir())
	m := p.waitLine(t, `^started worker-1 \(pid (\d+)\)`, 30*time.Second)
	p.waitLine(t, `"msg":"progress"`, 60*time.Second)
	pid, _ := strconv.Atoi(m[1])
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if code := p.wait(t, 30*time.Second); code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	p.waitLine(t, fmt.Sprintf(`^worker-1 \(pid %d\) exited \(signal: killed\), not restarted \(--restart=false\)$`, pid), 0)
	p.waitLine(t, `every worker exited before the run finished`, 0)
	for _, l := range p.stderr() {
		if strings.Contains(l, "restarted worker-1") {
			t.Fatalf("restarted with --restart=false: %q", l)
		}
	}
}
