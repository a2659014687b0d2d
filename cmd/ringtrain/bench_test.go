package main

import (
	"context"
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// The all-reduce benchmark and its wire ceiling run real rank processes and
// print one line per size with the reference script's fields.
func TestBenchAllReduceAndWirePrintOneLinePerSize(t *testing.T) {
	for _, kind := range []string{"allreduce", "wire"} {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		out, err := exec.CommandContext(ctx, ringtrainBin, "bench", kind, "--workers", "3",
			"--sizes-mib", "0.5,1", "--iters", "2", "--warmup", "1").Output()
		cancel()
		if err != nil {
			t.Fatalf("bench %s: %v", kind, err)
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		if len(lines) != 2 {
			t.Fatalf("bench %s printed %d lines, want 2:\n%s", kind, len(lines), out)
		}
		for i, line := range lines {
			var r struct {
				System  string   `json:"system"`
				Workers int      `json:"workers"`
				MiB     float64  `json:"mib"`
				Ms      *float64 `json:"ms_median"`
				AlgBW   float64  `json:"algbw_GBps"`
				BusBW   float64  `json:"busbw_GBps"`
				Correct bool     `json:"correct"`
			}
			if err := json.Unmarshal([]byte(line), &r); err != nil {
				t.Fatalf("bench %s line %q: %v", kind, line, err)
			}
			if r.Workers != 3 || r.MiB != []float64{0.5, 1}[i] || r.Ms == nil || r.BusBW <= 0 || !r.Correct {
				t.Errorf("bench %s: %s", kind, line)
			}
		}
	}
}

// With --tls the ranks of both benchmarks run the product's mutual TLS,
// certificates from an ephemeral CA, and say so; bench wire refuses it.
func TestBenchTLS(t *testing.T) {
	for _, args := range [][]string{
		{"bench", "allreduce", "--tls", "--workers", "3", "--sizes-mib", "0.5", "--iters", "2", "--warmup", "1"},
		{"bench", "train", "--tls", "--exact=false", "--workers", "2", "--layers", "784-16-10", "--global-batch", "32", "--steps", "2", "--warmup", "1"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		out, err := exec.CommandContext(ctx, ringtrainBin, args...).Output()
		cancel()
		if err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		var r struct {
			System  string `json:"system"`
			Correct *bool  `json:"correct"`
		}
		if err := json.Unmarshal([]byte(strings.TrimSpace(string(out))), &r); err != nil {
			t.Fatalf("%v: %q: %v", args, out, err)
		}
		if !strings.HasSuffix(r.System, "-tls") || (r.Correct != nil && !*r.Correct) {
			t.Errorf("%v: %s", args, out)
		}
	}
	if code, _, errs := runCLI("bench", "wire", "--tls"); code != 2 || !strings.Contains(errs, "bench allreduce --tls") {
		t.Errorf("bench wire --tls: exit %d, %q", code, errs)
	}
}
