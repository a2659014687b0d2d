package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ringtrain/ringtrain/internal/usage"
)

// recoveryResult is one round of `ringtrain bench recovery`, or with Rounds
// set the medians of all rounds.
type recoveryResult struct {
	System  string `json:"system"`
	Workers int    `json:"workers"`
	Round   int    `json:"round,omitempty"`
	Rounds  int    `json:"rounds,omitempty"`
	// RecoveryMs: from the kill -9 of a worker to the first step a survivor
	// trains in the next generation. RingMs: to the survivors' sync record
	// of that generation (the ring formed, state agreed).
	RecoveryMs float64 `json:"recovery_ms"`
	RingMs     float64 `json:"ring_ms"`
	// JoinMs: from the restarted worker's registration to its first step.
	JoinMs float64 `json:"join_ms"`
}

// stepLogRecord is the part of a worker's step-log record these timings use.
type stepLogRecord struct {
	T     int64  `json:"t"`
	Event string `json:"event"`
	Gen   uint64 `json:"gen"`
	PID   int    `json:"pid"`
}

func (r stepLogRecord) time() time.Time { return time.Unix(0, r.T) }

// runBenchRecovery measures recovery and join times of a local cluster from
// the workers' timestamped step logs: each round starts `ringtrain local`,
// lets it train, kills one worker with SIGKILL, and times the survivors'
// first step in the next generation and the restarted worker's first step
// after its registration.
func runBenchRecovery(ctx context.Context, e *env, args []string) error {
	fs := e.newFlagSet("Times recovery: `ringtrain local` trains, one worker is killed with SIGKILL, and the workers' step logs\n" +
		"give the time from the kill to the survivors' first step in the next generation (recovery_ms) and from\n" +
		"the restarted worker's registration to its first step (join_ms). Prints one line per round, then the medians.")
	workers := fs.Int("workers", 3, "workers of the local cluster")
	rounds := fs.Int("rounds", 3, "rounds (each a new cluster)")
	layers := fs.String("layers", "784-512-512-10", "layer sizes")
	warm := fs.Duration("warm", 3*time.Second, "training time before the kill")
	bound := fs.Duration("bound", 60*time.Second, "longest wait for any phase")
	extra := fs.String("local-args", "", "more `ringtrain local` flags, space-separated")
	if err := usage.ParseFlags(fs, args); err != nil {
		return err
	}
	if *workers < 2 {
		return usage.Errorf("--workers %d: a worker must survive the kill; use --workers 3", *workers)
	}
	if *rounds < 1 {
		return usage.Errorf("--rounds %d must be at least 1", *rounds)
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	var all []recoveryResult
	enc := json.NewEncoder(e.stdout)
	for round := 1; round <= *rounds; round++ {
		r, err := recoveryRound(ctx, self, *workers, *layers, *warm, *bound, strings.Fields(*extra))
		if err != nil {
			return fmt.Errorf("round %d: %w", round, err)
		}
		r.Round = round
		all = append(all, r)
		if err := enc.Encode(r); err != nil {
			return err
		}
	}
	med := func(f func(recoveryResult) float64) float64 {
		ds := make([]time.Duration, len(all))
		for i, r := range all {
			ds[i] = time.Duration(f(r) * float64(time.Millisecond))
		}
		return roundTo(float64(median(ds))/float64(time.Millisecond), 1)
	}
	return enc.Encode(recoveryResult{System: "ringtrain-local", Workers: *workers, Rounds: len(all),
		RecoveryMs: med(func(r recoveryResult) float64 { return r.RecoveryMs }),
		RingMs:     med(func(r recoveryResult) float64 { return r.RingMs }),
		JoinMs:     med(func(r recoveryResult) float64 { return r.JoinMs })})
}

// recoveryRound is one cluster: train, kill, time, stop.
func recoveryRound(ctx context.Context, self string, workers int, layers string, warm, bound time.Duration, extra []string) (recoveryResult, error) {
	dir, err := os.MkdirTemp("", "ringtrain-bench-recovery-")
	if err != nil {
		return recoveryResult{}, err
	}
	defer os.RemoveAll(dir)
	args := append([]string{"local", "--workers", strconv.Itoa(workers), "--work-dir", dir,
		"--layers", layers, "--steps", "1000000", "--checkpoint-every", "0"}, extra...)
	logf, err := os.Create(filepath.Join(dir, "local.log"))
	if err != nil {
		return recoveryResult{}, err
	}
	defer logf.Close()
	cmd := exec.Command(self, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return recoveryResult{}, err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		cmd.Process.Signal(os.Interrupt) //nolint:errcheck // gone already is fine
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) //nolint:errcheck
			<-exited
		}
	}()
	logOf := func(i int) string { return filepath.Join(dir, "worker-"+strconv.Itoa(i)+".steps.jsonl") }

	// Every worker trains.
	deadline := time.Now().Add(bound)
	for i := 1; i <= workers; i++ {
		if _, err := waitRecord(ctx, exited, logOf(i), deadline, func(r stepLogRecord) bool { return r.Event == "step" }); err != nil {
			return recoveryResult{}, fmt.Errorf("worker-%d never trained: %w (logs: %s)", i, err, dir)
		}
	}
	select {
	case <-time.After(warm):
	case <-ctx.Done():
		return recoveryResult{}, ctx.Err()
	}

	// Kill the last worker.
	victim := workers
	recs, err := readStepRecords(logOf(victim))
	if err != nil {
		return recoveryResult{}, err
	}
	pid := 0
	for _, r := range recs {
		if r.Event == "start" {
			pid = r.PID
		}
	}
	if pid == 0 {
		return recoveryResult{}, fmt.Errorf("worker-%d's step log has no start record with its pid", victim)
	}
	survivor := logOf(1)
	before, err := readStepRecords(survivor)
	if err != nil {
		return recoveryResult{}, err
	}
	var gen uint64
	for _, r := range before {
		if r.Event == "step" {
			gen = r.Gen
		}
	}
	kill := time.Now()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		return recoveryResult{}, fmt.Errorf("kill -9 worker-%d (pid %d): %w", victim, pid, err)
	}

	deadline = time.Now().Add(bound)
	after := func(r stepLogRecord) bool { return r.time().After(kill) && r.Gen > gen }
	ring, err := waitRecord(ctx, exited, survivor, deadline, func(r stepLogRecord) bool { return r.Event == "sync" && after(r) })
	if err != nil {
		return recoveryResult{}, fmt.Errorf("the survivors never formed a new ring: %w (logs: %s)", err, dir)
	}
	step, err := waitRecord(ctx, exited, survivor, deadline, func(r stepLogRecord) bool { return r.Event == "step" && after(r) })
	if err != nil {
		return recoveryResult{}, fmt.Errorf("the survivors never trained again: %w (logs: %s)", err, dir)
	}
	reg, err := waitRecord(ctx, exited, logOf(victim), deadline, func(r stepLogRecord) bool { return r.Event == "registered" && r.time().After(kill) })
	if err != nil {
		return recoveryResult{}, fmt.Errorf("worker-%d was not restarted: %w (logs: %s)", victim, err, dir)
	}
	joined, err := waitRecord(ctx, exited, logOf(victim), deadline, func(r stepLogRecord) bool { return r.Event == "step" && r.time().After(reg.time()) })
	if err != nil {
		return recoveryResult{}, fmt.Errorf("the restarted worker-%d never trained: %w (logs: %s)", victim, err, dir)
	}
	ms := func(d time.Duration) float64 { return roundTo(float64(d)/float64(time.Millisecond), 1) }
	return recoveryResult{System: "ringtrain-local", Workers: workers,
		RecoveryMs: ms(step.time().Sub(kill)), RingMs: ms(ring.time().Sub(kill)), JoinMs: ms(joined.time().Sub(reg.time()))}, nil
}

// waitRecord polls a step log until a record satisfies ok, the deadline
// passes, the cluster exits or ctx ends.
func waitRecord(ctx context.Context, exited <-chan error, path string, deadline time.Time, ok func(stepLogRecord) bool) (stepLogRecord, error) {
	for {
		recs, err := readStepRecords(path)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return stepLogRecord{}, err
		}
		for _, r := range recs {
			if ok(r) {
				return r, nil
			}
		}
		if time.Now().After(deadline) {
			return stepLogRecord{}, fmt.Errorf("no such record in %s before the deadline", path)
		}
		select {
		case err := <-exited:
			return stepLogRecord{}, fmt.Errorf("ringtrain local exited: %v", err)
		case <-ctx.Done():
			return stepLogRecord{}, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// readStepRecords reads a step log's records; a torn last line is skipped.
func readStepRecords(path string) ([]stepLogRecord, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var recs []stepLogRecord
	br := bufio.NewReaderSize(f, 1<<16)
	for {
		line, err := br.ReadBytes('\n')
		if err == io.EOF {
			return recs, nil
		}
		if err != nil {
			return recs, err
		}
		var r stepLogRecord
		if json.Unmarshal(line, &r) == nil {
			recs = append(recs, r)
		}
	}
}
