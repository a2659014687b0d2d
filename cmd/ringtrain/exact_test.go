package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/train"
)

// The first exactness proof: the default MLP trained 300 steps by
// `ringtrain train` and by `ringtrain local` with 1 to 5 worker processes
// ends with one params_sha256. The global batch of 128 is 8 micro-shards of
// 16, so every worker computes at least one micro-shard of every step.
func TestExactAtAnyWorkerCount(t *testing.T) {
	if testing.Short() {
		t.Skip("real processes")
	}
	args := []string{"--steps", "300", "--checkpoint-every", "0"}
	want := referenceHash(t, args...)
	for n := 1; n <= 5; n++ {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			start := time.Now()
			p := startLocal(t, append([]string{"--workers", fmt.Sprint(n), "--min-workers", fmt.Sprint(n), "--restart=false", "--log-level", "error"}, args...)...)
			if code := p.wait(t, 3*time.Minute); code != 0 {
				t.Fatalf("local --workers %d exited %d", n, code)
			}
			lines := bytes.Split(bytes.TrimSpace(p.stdout.Bytes()), []byte("\n"))
			var sum train.Summary
			if err := json.Unmarshal(lines[len(lines)-1], &sum); err != nil {
				t.Fatalf("summary: %v in %q", err, p.stdout.String())
			}
			if sum.Workers != n || sum.Step != 300 || sum.ParamsSHA256 != want {
				t.Fatalf("%d workers: step %d, %d workers, params_sha256 %s; ringtrain train: %s", n, sum.Step, sum.Workers, sum.ParamsSHA256, want)
			}
			t.Logf("%d workers: params_sha256 %s in %.1fs (%.0f samples/s)", n, sum.ParamsSHA256, time.Since(start).Seconds(), sum.SamplesPerSec)
		})
	}
}
