package allreduce

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestAllReduceMemSizes(t *testing.T) {
	for n := 1; n <= 8; n++ {
		t.Run(fmt.Sprintf("n=%d", n), func(t *testing.T) {
			_, ts, _ := memCluster(t, n)
			rings := buildRings(t, ts, seq(n), 1, nil)
			lengths := []int{0, 1, max(0, n-1), n + 1, 1000, 1000003}
			if testing.Short() || raceEnabled && n > 4 {
				lengths = lengths[:5]
			}
			for _, l := range lengths {
				checkAllReduce(t, rings, l)
			}
			checkFloatAllReduce(t, rings, 12345, uint64(n))
		})
	}
}

func TestAllReduceMemLargeChunks(t *testing.T) {
	_, ts, _ := memCluster(t, 3)
	rings := buildRings(t, ts, seq(3), 1, func(c *Config) { c.ChunkBytes = 0 })
	checkAllReduce(t, rings, 1000003)
}

func TestAllReduceMemBackToBack(t *testing.T) {
	_, ts, _ := memCluster(t, 4)
	rings := buildRings(t, ts, seq(4), 1, nil)
	const rounds = 50
	errs := onAll(rings, func(rank int, r *Ring) error {
		for i := range rounds {
			l := 1 + (i*37)%5000
			buf := intData(l, rank+i)
			if err := r.AllReduce(context.Background(), buf); err != nil {
				return err
			}
			want := make([]float32, l)
			for k := range 4 {
				for j, v := range intData(l, k+i) {
					want[j] += v
				}
			}
			for j := range want {
				if buf[j] != want[j] {
					return fmt.Errorf("round %d [%d] = %v, want %v", i, j, buf[j], want[j])
				}
			}
			if i%10 == 0 {
				if err := r.Barrier(context.Background()); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
}

func TestBroadcastMem(t *testing.T) {
	for _, n := range []int{1, 2, 3, 5} {
		for _, l := range []int{0, 1, 3000, 100003} {
			t.Run(fmt.Sprintf("n=%d/l=%d", n, l), func(t *testing.T) {
				_, ts, _ := memCluster(t, n)
				rings := buildRings(t, ts, seq(n), 1, nil)
				for root := range n {
					bufs := make([][]float32, n)
					for r := range n {
						bufs[r] = intData(l, r)
					}
					errs := onAll(rings, func(rank int, r *Ring) error {
						return r.Broadcast(context.Background(), bufs[rank], root)
					})
					if err := errors.Join(errs...); err != nil {
						t.Fatal(err)
					}
					want := intData(l, root)
					for r := range n {
						for i := range want {
							if bufs[r][i] != want[i] {
								t.Fatalf("root %d rank %d [%d] = %v, want %v", root, r, i, bufs[r][i], want[i])
							}
						}
					}
				}
				if err := rings[0].Broadcast(context.Background(), nil, n); err == nil {
					t.Errorf("Broadcast with root %d of %d ranks succeeded", n, n)
				}
			})
		}
	}
}

func TestBarrierMem(t *testing.T) {
	_, ts, _ := memCluster(t, 4)
	rings := buildRings(t, ts, seq(4), 1, func(c *Config) { c.PeerTimeout = 5 * time.Second })
	var entered atomic.Int32
	errs := onAll(rings, func(rank int, r *Ring) error {
		if rank == 2 {
			time.Sleep(100 * time.Millisecond)
		}
		entered.Add(1)
		if err := r.Barrier(context.Background()); err != nil {
			return err
		}
		if got := entered.Load(); got != 4 {
			return fmt.Errorf("rank %d left the barrier when %d of 4 had entered", rank, got)
		}
		return nil
	})
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
}

// TestKillMidCollectiveMem kills a rank while it sends in the middle of a
// collective; every survivor must fail naming it, then the survivors build
// the next generation on the same transports and succeed.
func TestKillMidCollectiveMem(t *testing.T) {
	for _, k := range kinds {
		for _, n := range []int{2, 3, 5} {
			for _, victim := range []int{0, n - 1} {
				t.Run(fmt.Sprintf("%s/n=%d/victim=%d", k.name, n, victim), func(t *testing.T) {
					net, ts, addrs := memCluster(t, n)
					rings := buildRings(t, ts, seq(n), 1, fast)
					k.check(t, rings, 5000)
					var sent atomic.Int32
					net.OnSend(func(from, to string, m *Message) {
						if from == addrs[victim] && m.Kind == KindData && sent.Add(1) == 3 {
							net.Kill(addrs[victim])
						}
					})
					start := time.Now()
					errs := onAll(rings, func(rank int, r *Ring) error { return k.sum(r, 50000, rank) })
					survivors := without(seq(n), victim)
					for _, pe := range expectPeerErrors(t, errs, survivors, time.Since(start)) {
						if pe.Rank != victim || pe.Addr != addrs[victim] {
							t.Errorf("error names rank %d (%s), want the victim %d (%s)", pe.Rank, pe.Addr, victim, addrs[victim])
						}
					}
					if errs[victim] == nil {
						t.Errorf("the killed rank's own call succeeded")
					}
					// A broken ring stays broken.
					if err := rings[survivors[0]].Barrier(context.Background()); !errors.Is(err, ErrBroken) {
						t.Errorf("barrier on a broken ring: %v, want ErrBroken", err)
					}
					if err := k.sum(rings[survivors[0]], 1, 0); !errors.Is(err, ErrBroken) {
						t.Errorf("a sum on a broken ring: %v, want ErrBroken", err)
					}
					net.OnSend(nil)
					for _, r := range rings {
						r.Close()
					}
					next := buildRings(t, ts, survivors, 2, nil)
					k.check(t, next, 1001)
					k.check(t, next, 3)
				})
			}
		}
	}
}

func TestPartitionMem(t *testing.T) {
	net, ts, addrs := memCluster(t, 3)
	rings := buildRings(t, ts, seq(3), 1, fast)
	checkAllReduce(t, rings, 100)
	net.Partition(addrs[1], addrs[2])
	start := time.Now()
	errs := onAll(rings, func(rank int, r *Ring) error {
		return r.AllReduce(context.Background(), intData(10000, rank))
	})
	for i, pe := range expectPeerErrors(t, errs, seq(3), time.Since(start)) {
		if i != 0 && pe.Rank != 1 && pe.Rank != 2 {
			t.Errorf("rank %d blames rank %d, want 1 or 2 (the partitioned link)", i, pe.Rank)
		}
	}
	// Heal and rebuild: everyone, next generation.
	net.Heal()
	for _, r := range rings {
		r.Close()
	}
	checkAllReduce(t, buildRings(t, ts, seq(3), 2, nil), 777)
}

func TestHungPeerMem(t *testing.T) {
	net, ts, addrs := memCluster(t, 4)
	rings := buildRings(t, ts, seq(4), 1, fast)
	net.Hang(addrs[2])
	start := time.Now()
	errs := onAll(rings, func(rank int, r *Ring) error {
		return r.AllReduce(context.Background(), intData(1000, rank))
	})
	for i, pe := range expectPeerErrors(t, errs, []int{0, 1, 3}, time.Since(start)) {
		if pe.Rank != 2 {
			t.Errorf("survivor %d blames rank %d, want the hung rank 2: %v", i, pe.Rank, pe)
		}
	}
	if !errors.Is(errs[3], ErrPeerTimeout) {
		t.Errorf("rank 3 (right of the hung rank): %v, want ErrPeerTimeout", errs[3])
	}
	if !strings.Contains(errs[3].Error(), "recv chunk 0 from rank 2 (mem-2): peer timeout after 300ms") {
		t.Errorf("rank 3's error does not read as expected: %v", errs[3])
	}
}

func TestDelayedNetworkStillWorksMem(t *testing.T) {
	net, ts, _ := memCluster(t, 3)
	rings := buildRings(t, ts, seq(3), 1, nil)
	net.SetDelay(2 * time.Millisecond)
	checkAllReduce(t, rings, 3000)
}

func TestDroppedMessageMem(t *testing.T) {
	net, ts, addrs := memCluster(t, 3)
	rings := buildRings(t, ts, seq(3), 1, fast)
	net.DropNext(addrs[0], addrs[1], 1)
	start := time.Now()
	errs := onAll(rings, func(rank int, r *Ring) error {
		return r.AllReduce(context.Background(), intData(10000, rank))
	})
	pes := expectPeerErrors(t, errs, seq(3), time.Since(start))
	if pes[1].Rank != 0 || !errors.Is(errs[1], ErrProtocol) {
		t.Errorf("rank 1 after a lost message: %v, want a protocol error naming rank 0", errs[1])
	}
}

func TestContextCancelMem(t *testing.T) {
	_, ts, _ := memCluster(t, 3)
	rings := buildRings(t, ts, seq(3), 1, func(c *Config) { c.PeerTimeout = time.Minute })
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	// Rank 2 never calls: the others wait until their context ends.
	errs := onAll(rings[:2], func(rank int, r *Ring) error { return r.AllReduce(ctx, intData(100, rank)) })
	if time.Since(start) > 5*time.Second {
		t.Errorf("took %v", time.Since(start))
	}
	for r, err := range errs {
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("rank %d: %v, want context.DeadlineExceeded", r, err)
		}
	}
}

func TestStaleGenerationMem(t *testing.T) {
	_, ts, addrs := memCluster(t, 2)
	buildRings(t, ts, seq(2), 3, nil)
	// Same transport, older generation: refused locally.
	cfg := testConfig(t, addrs, 2, 0)
	if _, err := NewRing(context.Background(), ts[0], cfg); !errors.Is(err, ErrStaleGeneration) ||
		!strings.Contains(err.Error(), "generation 3") || !strings.Contains(err.Error(), "generation 2") {
		t.Errorf("older generation on the same transport: %v, want ErrStaleGeneration naming 3 and 2", err)
	}
	// A fresh process (transport) at generation 2 reaching a peer at 3.
	net := NewMemNetwork()
	a, b := net.Transport("a"), net.Transport("b")
	defer a.Close()
	defer b.Close()
	bRings := buildRings(t, []Transport{a, b}, []int{0, 1}, 3, nil)
	bRings[0].Close() // a leaves generation 3; a new process at a is at generation 2
	a.Close()
	a2 := net.Transport("a")
	defer a2.Close()
	_, err := NewRing(context.Background(), a2, testConfig(t, []string{"a", "b"}, 2, 0))
	var pe *PeerError
	if !errors.Is(err, ErrStaleGeneration) || !errors.As(err, &pe) || pe.Rank != 1 {
		t.Fatalf("gen 2 meets gen 3: %v, want ErrStaleGeneration naming rank 1", err)
	}
	if !strings.Contains(err.Error(), "peer is at generation 3, this side is at generation 2") {
		t.Errorf("error does not name both generations: %v", err)
	}
}

func TestStaleTrafficAfterNewGenerationMem(t *testing.T) {
	_, ts, _ := memCluster(t, 2)
	checkStaleTraffic(t, ts)
}

func TestWrongRunMem(t *testing.T) {
	_, ts, addrs := memCluster(t, 2)
	buildRings(t, ts[1:], []int{0}, 1, nil) // rank at ts[1] is in run-test, alone
	cfg := testConfig(t, addrs, 1, 0)
	cfg.RunID = "other-run"
	_, err := NewRing(context.Background(), ts[0], cfg)
	if !errors.Is(err, ErrWrongRun) || !strings.Contains(err.Error(), `"run-test"`) || !strings.Contains(err.Error(), `"other-run"`) {
		t.Errorf("wrong run: %v, want ErrWrongRun naming both runs", err)
	}
}

func TestCloseIdempotentAndClosedErrors(t *testing.T) {
	_, ts, _ := memCluster(t, 2)
	rings := buildRings(t, ts, seq(2), 1, nil)
	rings[0].Close()
	rings[0].Close()
	if err := rings[0].AllReduce(context.Background(), []float32{1}); !errors.Is(err, ErrClosed) {
		t.Errorf("AllReduce after Close: %v, want ErrClosed", err)
	}
	ts[0].Close()
	ts[0].Close()
	if _, err := NewRing(context.Background(), ts[0], testConfig(t, []string{ts[0].Addr(), ts[1].Addr()}, 2, 0)); !errors.Is(err, ErrClosed) {
		t.Errorf("NewRing on a closed transport: %v, want ErrClosed", err)
	}
}

func TestConfigValidate(t *testing.T) {
	bad := []Config{
		{Members: []string{"a"}},
		{RunID: "r"},
		{RunID: "r", Members: []string{"a", "a"}},
		{RunID: "r", Members: []string{"a"}, Rank: 1},
		{RunID: "r", Members: []string{"a"}, ChunkBytes: 100},
		{RunID: "r", Members: []string{"a"}, PeerTimeout: -1},
	}
	for _, c := range bad {
		if err := c.Validate(); err == nil {
			t.Errorf("Validate(%+v) = nil, want an error", c)
		}
	}
	if err := (Config{RunID: "r", Members: []string{"a"}}).Validate(); err != nil {
		t.Errorf("minimal config: %v", err)
	}
}

func seq(n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = i
	}
	return s
}

func without(s []int, x int) []int {
	var out []int
	for _, v := range s {
		if v != x {
			out = append(out, v)
		}
	}
	return out
}
