package main

// Levenberg–Marquardt (--optimizer lm) as a user runs it: `ringtrain train`
// and `ringtrain local` with worker processes, one of them killed with
// kill -9.

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/train"
)

// lmArgs fits sin on 40 points with a 1-10-1 tanh network by LM, the whole
// set in each step (micro-shards of 16, 16 and 8: one per worker of 3).
func lmArgs(steps int) []string {
	return []string{"--optimizer", "lm", "--loss", "mse", "--data", "sine:40", "--layers", "1-10-1",
		"--activation", "tanh", "--weight-init", "glorot", "--batch", "40", "--steps", strconv.Itoa(steps)}
}

// lmSummary is the last JSON line of `ringtrain local`'s stdout.
func lmSummary(t *testing.T, p *localProc) train.Summary {
	t.Helper()
	lines := bytes.Split(bytes.TrimSpace(p.stdout.Bytes()), []byte("\n"))
	var sum train.Summary
	if err := json.Unmarshal(lines[len(lines)-1], &sum); err != nil {
		t.Fatalf("summary: %v in %q", err, p.stdout.String())
	}
	return sum
}

// LM on 3 worker processes ends with the model of `ringtrain train`, bit
// for bit.
func TestLMLocalMatchesTrain(t *testing.T) {
	if testing.Short() {
		t.Skip("real processes")
	}
	args := append(lmArgs(200), "--checkpoint-every", "0")
	want := referenceHash(t, args...)
	p := startLocal(t, append([]string{"--workers", "3", "--min-workers", "3", "--restart=false", "--log-level", "error"}, args...)...)
	if code := p.wait(t, 2*time.Minute); code != 0 {
		t.Fatalf("local exited %d", code)
	}
	sum := lmSummary(t, p)
	if sum.Workers != 3 || sum.Step != 200 || sum.ParamsSHA256 != want || !(sum.TestLoss < 1e-3) {
		t.Fatalf("local --workers 3: %+v; ringtrain train: params_sha256 %s; want 200 steps, the same hash, test mse < 1e-3", sum, want)
	}
	t.Logf("3 workers: params_sha256 %s (ringtrain train's), test mse %.3g", sum.ParamsSHA256, sum.TestLoss)
}

// kill -9 of a worker during an LM run: local restarts it, the ring
// re-forms (the damping μ travels with the state), and the run ends with
// the undisturbed model.
func TestLMLocalSurvivesKill(t *testing.T) {
	if testing.Short() {
		t.Skip("real processes")
	}
	// Minibatches of 40 of 200 points: the parameters change at every step
	// to the last (on the full batch of sine:40 they settle after ~300
	// steps), so a step lost or applied twice would show in the hash.
	const steps = 2000 // about 15 s on 3 workers: long enough to be killed mid-run
	args := []string{"--optimizer", "lm", "--loss", "mse", "--data", "sine:200", "--layers", "1-20-1",
		"--activation", "tanh", "--weight-init", "glorot", "--batch", "40", "--steps", strconv.Itoa(steps), "--checkpoint-every", "100"}
	want := referenceHash(t, args...)
	// --min-workers 3: the run can only finish once the restarted worker is back.
	p := startLocal(t, append([]string{"--workers", "3", "--min-workers", "3", "--work-dir", t.TempDir()}, args...)...)
	m := p.waitLine(t, `^started worker-2 \(pid (\d+)\)`, 30*time.Second)
	pid, _ := strconv.Atoi(m[1])
	prog := p.waitLine(t, `"msg":"progress".*"step":(\d+)`, 60*time.Second)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	t.Logf("kill -9 worker-2 (pid %d) at step %s", pid, prog[1])
	p.waitLine(t, `^restarted worker-2 \(pid \d+, restart 1\)`, 30*time.Second)
	if code := p.wait(t, 3*time.Minute); code != 0 {
		t.Fatalf("local exited %d", code)
	}
	sum := lmSummary(t, p)
	if sum.Step != steps || sum.ParamsSHA256 != want {
		t.Fatalf("after kill -9: %+v; undisturbed params_sha256 %s", sum, want)
	}
	if at, _ := strconv.Atoi(prog[1]); at >= steps {
		t.Fatalf("the kill came after the last step (%d)", at)
	}
	t.Logf("killed at step %s; params_sha256 %s, the undisturbed run's", prog[1], sum.ParamsSHA256)
}

// LM's usage errors: one line naming both values, exit 2.
func TestLMUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"--optimizer", "lm", "--loss", "cross_entropy", "--layers", "1-10-1", "--data", "sine:40"},
			[]string{"--optimizer lm", "--loss cross_entropy", "--loss mse"}},
		{[]string{"--optimizer", "lm", "--loss", "mse", "--layers", "1-100-100-1", "--data", "sine:40"},
			[]string{"--optimizer lm", "10401 parameters", "--lm-max-params 1000"}},
		{[]string{"--optimizer", "lm", "--loss", "mse", "--layers", "1-10-1", "--lm-max-params", "30", "--data", "sine:40"},
			[]string{"31 parameters", "--lm-max-params 30"}},
		{[]string{"--optimizer", "lm", "--loss", "mse", "--layers", "1-10-1", "--lm-mu-down", "2"}, []string{"--lm-mu-down 2"}},
		{[]string{"--optimizer", "lm", "--loss", "mse", "--layers", "1-10-1", "--data", "sine:1"}, []string{"sine:1", "sine:N"}},
	} {
		code, _, errs := runCLI(append([]string{"train"}, tc.args...)...)
		lines := strings.Split(strings.TrimSpace(errs), "\n")
		if code != 2 || len(lines) != 1 {
			t.Errorf("train %v: exit %d, stderr %q; want exit 2 and one line", tc.args, code, errs)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(errs, w) {
				t.Errorf("train %v: %q does not mention %q", tc.args, errs, w)
			}
		}
	}
}
