package cluster

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/internal/usage"
	"github.com/ringtrain/ringtrain/train"
)

// TestPutFingerprintIfAbsent: of workers racing to store their
// fingerprints, one wins and every one gets the winner's back; a worker
// whose own differs from it is then refused with one line.
func TestPutFingerprintIfAbsent(t *testing.T) {
	e := startEtcd(t)
	c := newTestClient(t, e, "fp")
	ctx := testCtx(t, 20*time.Second)
	if _, ok, err := c.Fingerprint(ctx); err != nil || ok {
		t.Fatalf("Fingerprint of a new run: ok=%v, %v; want none", ok, err)
	}
	base := train.Fingerprint{GEMM: "openblas", Kernel: "SkylakeX", Threads: 1, GOARCH: "amd64", Data: strings.Repeat("0f", 32)}
	const n = 6
	stored := make([]train.Fingerprint, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fp := base
			fp.Threads = i + 1 // each different
			stored[i], errs[i] = newTestClient(t, e, "fp").PutFingerprintIfAbsent(ctx, fp)
		}()
	}
	wg.Wait()
	winner := stored[0]
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("racer %d: %v", i, errs[i])
		}
		if stored[i] != winner {
			t.Fatalf("racer %d got %+v, racer 0 %+v: not one winner", i, stored[i], winner)
		}
	}
	if winner.Threads < 1 || winner.Threads > n {
		t.Fatalf("stored %+v is none of the racers'", winner)
	}
	if got, ok, err := c.Fingerprint(ctx); err != nil || !ok || got != winner {
		t.Fatalf("Fingerprint = %+v, %v, %v; want %+v", got, ok, err, winner)
	}

	// A later worker: the stored fingerprint wins, and the comparison names
	// what differs.
	late := winner
	late.Threads = winner.Threads + 1
	got, err := c.PutFingerprintIfAbsent(ctx, late)
	if err != nil || got != winner {
		t.Fatalf("late put = %+v, %v; want the stored %+v", got, err, winner)
	}
	err = late.Check(got)
	want := fmt.Sprintf("--threads %d differs from the run's %d", late.Threads, winner.Threads)
	if !usage.Is(err) || !strings.Contains(err.Error(), want) {
		t.Fatalf("Check = %v, want a usage error containing %q", err, want)
	}
	if err := winner.Check(got); err != nil {
		t.Fatalf("the winner's own Check = %v", err)
	}
	// Other runs are apart.
	if _, ok, err := newTestClient(t, e, "other").Fingerprint(ctx); err != nil || ok {
		t.Fatalf("another run's fingerprint: ok=%v, %v", ok, err)
	}
}

// TestWorkerInfoFingerprint: a registration carries the worker's
// fingerprint, and one without it (float mode, earlier releases) decodes.
func TestWorkerInfoFingerprint(t *testing.T) {
	e := startEtcd(t)
	c := newTestClient(t, e, "fpreg")
	ctx := testCtx(t, 20*time.Second)
	fp := train.Fingerprint{GEMM: "go", Kernel: "generic", Threads: 2, GOARCH: "arm64", Data: strings.Repeat("a1", 32)}
	for _, info := range []WorkerInfo{
		{ID: "w1", Addr: "127.0.0.1:1", Started: time.Unix(1, 0).UTC(), Fingerprint: fp},
		{ID: "w2", Addr: "127.0.0.1:2", Started: time.Unix(2, 0).UTC()},
	} {
		reg, err := c.Register(ctx, info, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer reg.Close()
	}
	ws, err := c.Workers(ctx)
	if err != nil || len(ws) != 2 {
		t.Fatalf("workers = %+v, %v", ws, err)
	}
	if ws[0].Fingerprint != fp {
		t.Fatalf("w1's fingerprint = %+v, want %+v", ws[0].Fingerprint, fp)
	}
	if ws[1].Fingerprint != (train.Fingerprint{}) {
		t.Fatalf("w2's fingerprint = %+v, want none", ws[1].Fingerprint)
	}
	if s := Marshal(ws[1]); strings.Contains(s, "fingerprint") {
		t.Fatalf("a registration without a fingerprint marshals one: %s", s)
	}
}
