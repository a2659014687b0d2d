package allreduce

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
)

// testPeerTimeout is the short timeout of the failure tests (see fast);
// healthy paths use a long one so that a loaded machine does not flake.
const testPeerTimeout = 300 * time.Millisecond

// fast sets the short timeout, for rings that are meant to fail.
func fast(c *Config) { c.PeerTimeout = testPeerTimeout }

// testBound is how long a survivor may take to fail: generous, so that the
// tests check "returns, never hangs" rather than timing.
const testBound = 10 * testPeerTimeout

func testConfig(t *testing.T, addrs []string, gen uint64, rank int) Config {
	t.Helper()
	cfg := DefaultLocalConfig()
	cfg.RunID = "run-test"
	cfg.Generation = gen
	cfg.Members = addrs
	cfg.Rank = rank
	cfg.PeerTimeout = 10 * time.Second
	cfg.ChunkBytes = minChunkBytes
	cfg.Logger = zaptest.NewLogger(t)
	return cfg
}

func memCluster(t *testing.T, n int) (*MemNetwork, []Transport, []string) {
	t.Helper()
	net := NewMemNetwork()
	ts := make([]Transport, n)
	addrs := make([]string, n)
	for i := range n {
		addrs[i] = fmt.Sprintf("mem-%d", i)
		ts[i] = net.Transport(addrs[i])
	}
	t.Cleanup(func() {
		for _, tr := range ts {
			tr.Close()
		}
	})
	return net, ts, addrs
}

// buildRings builds generation gen on the transports of ranks (indexes into
// ts, which are also the member list), concurrently, and closes the rings at
// cleanup.
func buildRings(t *testing.T, ts []Transport, ranks []int, gen uint64, mod func(*Config)) []*Ring {
	t.Helper()
	addrs := make([]string, len(ranks))
	for i, r := range ranks {
		addrs[i] = ts[r].Addr()
	}
	rings := make([]*Ring, len(ranks))
	errs := make([]error, len(ranks))
	var wg sync.WaitGroup
	for i, r := range ranks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cfg := testConfig(t, addrs, gen, i)
			if mod != nil {
				mod(&cfg)
			}
			rings[i], errs[i] = NewRing(context.Background(), ts[r], cfg)
		}()
	}
	wg.Wait()
	for _, r := range rings {
		if r != nil {
			t.Cleanup(func() { r.Close() })
		}
	}
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("NewRing gen %d: %v", gen, err)
	}
	return rings
}

// onAll runs fn on every ring concurrently and returns the errors by rank.
func onAll(rings []*Ring, fn func(rank int, r *Ring) error) []error {
	errs := make([]error, len(rings))
	var wg sync.WaitGroup
	for i, r := range rings {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = fn(i, r)
		}()
	}
	wg.Wait()
	return errs
}

// intData returns rank r's integer-valued test buffer, so sums are exact.
func intData(l, r int) []float32 {
	b := make([]float32, l)
	for i := range b {
		b[i] = float32((i*7+r*13)%101 - 50)
	}
	return b
}

// checkAllReduce runs AllReduce over all rings on integer data of length l
// and compares each rank's result with a serial sum, exactly.
func checkAllReduce(t *testing.T, rings []*Ring, l int) {
	t.Helper()
	n := len(rings)
	bufs := make([][]float32, n)
	want := make([]float32, l)
	for r := range n {
		bufs[r] = intData(l, r)
		for i, v := range bufs[r] {
			want[i] += v
		}
	}
	errs := onAll(rings, func(rank int, r *Ring) error {
		return r.AllReduce(context.Background(), bufs[rank])
	})
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("n=%d l=%d: %v", n, l, err)
	}
	for r := range n {
		for i := range want {
			if bufs[r][i] != want[i] {
				t.Fatalf("n=%d l=%d rank %d: [%d] = %v, want %v", n, l, r, i, bufs[r][i], want[i])
			}
		}
	}
}

// checkFloatAllReduce compares non-integer data with a float64 serial sum.
func checkFloatAllReduce(t *testing.T, rings []*Ring, l int, seed uint64) {
	t.Helper()
	n := len(rings)
	rng := rand.New(rand.NewPCG(seed, 1))
	bufs := make([][]float32, n)
	want := make([]float64, l)
	for r := range n {
		bufs[r] = make([]float32, l)
		for i := range bufs[r] {
			bufs[r][i] = float32(rng.NormFloat64())
			want[i] += float64(bufs[r][i])
		}
	}
	errs := onAll(rings, func(rank int, r *Ring) error {
		return r.AllReduceMean(context.Background(), bufs[rank])
	})
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	for r := range n {
		for i := range want {
			if d := math.Abs(float64(bufs[r][i]) - want[i]/float64(n)); d > 1e-5*float64(n) {
				t.Fatalf("rank %d [%d] = %v, want %v", r, i, bufs[r][i], want[i]/float64(n))
			}
			if bufs[r][i] != bufs[0][i] {
				t.Fatalf("rank %d [%d] = %v differs from rank 0's %v", r, i, bufs[r][i], bufs[0][i])
			}
		}
	}
}

// expectPeerErrors checks that every survivor failed with a *PeerError
// within the bound, and returns those errors.
func expectPeerErrors(t *testing.T, errs []error, survivors []int, elapsed time.Duration) []*PeerError {
	t.Helper()
	if elapsed > testBound {
		t.Errorf("survivors took %v to fail, bound %v", elapsed, testBound)
	}
	var pes []*PeerError
	for _, r := range survivors {
		var pe *PeerError
		if !errors.As(errs[r], &pe) {
			t.Fatalf("rank %d: got %v, want a *PeerError", r, errs[r])
		}
		t.Logf("rank %d: %v", r, errs[r])
		pes = append(pes, pe)
	}
	return pes
}

// waitGeneration waits until tr has registered generation gen.
func waitGeneration(t *testing.T, tr Transport, gen uint64) {
	t.Helper()
	var reg *registry
	switch tr := tr.(type) {
	case *memTransport:
		reg = tr.reg
	case *GRPCTransport:
		reg = tr.reg
	default:
		t.Fatalf("unknown transport %T", tr)
	}
	deadline := time.Now().Add(testBound)
	for reg.current().Generation != gen {
		if time.Now().After(deadline) {
			t.Fatalf("generation %d never registered on %s", gen, tr.Addr())
		}
		time.Sleep(time.Millisecond)
	}
}

// checkStaleTraffic: rank 1 moves on to generation 2 and closes 1 while
// rank 0 still talks generation 1; rank 0 must get ErrStaleGeneration naming
// both generations and rank 1, and generation 2 must not form with it.
func checkStaleTraffic(t *testing.T, ts []Transport) {
	t.Helper()
	old := buildRings(t, ts, seq(2), 1, nil)
	reg := make(chan error, 1)
	go func() {
		cfg := testConfig(t, []string{ts[0].Addr(), ts[1].Addr()}, 2, 1)
		fast(&cfg)
		r, err := NewRing(context.Background(), ts[1], cfg)
		if err == nil {
			r.Close()
		}
		reg <- err
	}()
	waitGeneration(t, ts[1], 2)
	old[1].Close()
	err := old[0].AllReduce(context.Background(), intData(10, 0))
	if !errors.Is(err, ErrStaleGeneration) || !strings.Contains(err.Error(), "peer is at generation 2, this side is at generation 1") {
		t.Errorf("old generation's traffic: %v, want ErrStaleGeneration naming 2 and 1", err)
	}
	var pe *PeerError
	if !errors.As(err, &pe) || pe.Rank != 1 {
		t.Errorf("error %v does not name rank 1", err)
	}
	if err := <-reg; err == nil {
		t.Errorf("generation 2 with a peer still at 1 succeeded")
	}
}
