package allreduce

import (
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// wireRing starts n WireBench ranks in this process; cancel[i] stops rank i.
func wireRing(t *testing.T, n int, cfg WireConfig) (results [][]BenchResult, errs []error, took []time.Duration, cancel []context.CancelFunc, wait func()) {
	t.Helper()
	liss := make([]net.Listener, n)
	members := make([]string, n)
	for i := range liss {
		lis, err := netListen()
		if err != nil {
			t.Fatal(err)
		}
		liss[i], members[i] = lis, lis.Addr().String()
		t.Cleanup(func() { lis.Close() })
	}
	results, errs, took = make([][]BenchResult, n), make([]error, n), make([]time.Duration, n)
	cancel = make([]context.CancelFunc, n)
	var wg sync.WaitGroup
	for i := range n {
		ctx, c := context.WithCancel(context.Background())
		cancel[i] = c
		t.Cleanup(c)
		c2 := cfg
		c2.Listener, c2.Members, c2.Rank = liss[i], members, i
		wg.Go(func() {
			start := time.Now()
			results[i], errs[i] = WireBench(ctx, c2)
			took[i] = time.Since(start)
		})
	}
	return results, errs, took, cancel, wg.Wait
}

func TestWireBenchMovesTheRingsBytes(t *testing.T) {
	for _, n := range []int{2, 3} {
		results, errs, _, _, wait := wireRing(t, n, WireConfig{SizesMiB: []float64{0.25, 1}, Warmup: 1, Iters: 3, WriteBytes: 64 << 10})
		wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("n=%d rank %d: %v", n, i, err)
			}
		}
		for i, res := range results {
			if len(res) != 2 {
				t.Fatalf("n=%d rank %d: %d results, want 2", n, i, len(res))
			}
			for _, r := range res {
				if r.System != "tcp-ring-wire" || r.Workers != n || !r.Correct || r.BusBWGBps <= 0 {
					t.Errorf("n=%d rank %d: %+v", n, i, r)
				}
				// busbw is algbw·2(N−1)/N, as for the all-reduce.
				if want := r.AlgBWGBps * 2 * float64(n-1) / float64(n); r.BusBWGBps < want-0.002 || r.BusBWGBps > want+0.002 {
					t.Errorf("n=%d: busbw %v, algbw %v: want %v", n, r.BusBWGBps, r.AlgBWGBps, want)
				}
			}
		}
	}
}

func TestWireBenchDeadRankFailsSurvivors(t *testing.T) {
	const timeout = 2 * time.Second
	_, errs, took, cancel, wait := wireRing(t, 3, WireConfig{SizesMiB: []float64{16}, Warmup: 1, Iters: 1000, IOTimeout: timeout})
	time.Sleep(300 * time.Millisecond)
	cancel[2]()
	wait()
	for _, i := range []int{0, 1} {
		if errs[i] == nil {
			t.Fatalf("rank %d finished 1000 iterations without noticing rank 2 die", i)
		}
		if took[i] > 300*time.Millisecond+2*timeout+time.Second {
			t.Errorf("rank %d took %v to fail", i, took[i])
		}
		if !strings.Contains(errs[i].Error(), "wire bench") {
			t.Errorf("rank %d: %v", i, errs[i])
		}
	}
}

func TestWireBenchNoPeerFailsWithinTimeout(t *testing.T) {
	lis, err := netListen()
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	dead, err := netListen()
	if err != nil {
		t.Fatal(err)
	}
	addr := dead.Addr().String()
	dead.Close()
	start := time.Now()
	_, err = WireBench(context.Background(), WireConfig{Listener: lis, Members: []string{lis.Addr().String(), addr}, IOTimeout: 500 * time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), "rank 1") {
		t.Fatalf("err = %v, want a connect error naming rank 1", err)
	}
	if el := time.Since(start); el > 3*time.Second {
		t.Errorf("took %v", el)
	}
}

func TestWireRecvCatchesWrongBytes(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	const n = 4096
	go func() {
		bad := wirePattern(0, n)
		bad[1000] ^= 1
		a.Write(bad)
	}()
	err := wireRecv(b, wirePattern(0, n), make([]byte, n), n, time.Second)
	if err == nil || !strings.Contains(err.Error(), "wrong bytes") {
		t.Fatalf("err = %v, want wrong bytes", err)
	}
	// And another rank's pattern is not this one's.
	if string(wirePattern(1, n)) == string(wirePattern(0, n)) {
		t.Fatal("ranks 0 and 1 send the same pattern")
	}
}
