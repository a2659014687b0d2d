package allreduce

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"time"

	"go.uber.org/zap"

	"github.com/ringtrain/ringtrain/internal/cputime"
)

// BenchConfig describes one rank of `ringtrain bench allreduce`: the command
// starts one OS process per rank, each running BenchWorker.
type BenchConfig struct {
	// Listener, if set, is the already-open listener of this rank; otherwise
	// BenchWorker listens on Listen, or on Members[Rank] when Listen is empty.
	Listener net.Listener
	Listen   string
	// Members are all ranks' addresses in rank order; Rank indexes them.
	Members []string
	Rank    int
	// SizesMiB are the buffer sizes to measure (default 1, 4, 16, 64).
	SizesMiB []float64
	// Warmup and Iters are the untimed and timed all-reduces per size
	// (zero: 3 and 20; a negative Warmup means none).
	Warmup, Iters int
	// RunID defaults to "bench".
	RunID string
	// ChunkBytes and PeerTimeout as in Config (zero: defaults).
	ChunkBytes  int
	PeerTimeout time.Duration
	// ConnectTimeout bounds waiting for the other processes to start
	// (default 60s).
	ConnectTimeout time.Duration
	Logger         *zap.Logger
	// TLS, if set, makes the ring speak mutual TLS as the product's does,
	// with Identities (every rank's, in rank order) authorizing the ranks.
	TLS        *TLS
	Identities []string
}

// BenchResult is one size's measurement, with the JSON fields of the gloo
// reference (bench/torch_allreduce.py). Times are this rank's: rank 0's are
// the ones to report. Correct is true when every rank saw the right sums.
type BenchResult struct {
	System    string  `json:"system"`
	Workers   int     `json:"workers"`
	MiB       float64 `json:"mib"`
	MsMedian  float64 `json:"ms_median"`
	AlgBWGBps float64 `json:"algbw_GBps"`
	BusBWGBps float64 `json:"busbw_GBps"`
	Correct   bool    `json:"correct"`
	// CPUms is the median CPU time (user and system, all threads) this
	// rank's process spent per timed all-reduce: on a machine with fewer
	// cores than ranks the ring is CPU-bound, and this is its cost per
	// byte. Zero (omitted) for bench wire and where it is not measured.
	CPUms float64 `json:"cpu_ms,omitempty"`
}

// BenchWorker runs one rank of the all-reduce benchmark over the gRPC
// transport: for each size, Warmup then Iters timed AllReduce calls of a
// buffer filled with rank+1, each after a Barrier; it checks that every
// element equals N(N+1)/2 on every rank.
func BenchWorker(ctx context.Context, cfg BenchConfig) (_ []BenchResult, err error) {
	cfg.SizesMiB, cfg.Warmup, cfg.Iters = benchPlan(cfg.SizesMiB, cfg.Warmup, cfg.Iters)
	if cfg.RunID == "" {
		cfg.RunID = "bench"
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = time.Minute
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.Rank < 0 || cfg.Rank >= len(cfg.Members) {
		return nil, fmt.Errorf("allreduce: bench: rank %d is outside [0, %d)", cfg.Rank, len(cfg.Members))
	}
	lis := cfg.Listener
	if lis == nil {
		addr := cfg.Listen
		if addr == "" {
			addr = cfg.Members[cfg.Rank]
		}
		if lis, err = net.Listen("tcp", addr); err != nil {
			return nil, fmt.Errorf("allreduce: bench: %w", err)
		}
	}
	opts := []GRPCOption{WithAdvertiseAddr(cfg.Members[cfg.Rank]), WithGRPCLogger(cfg.Logger)}
	if cfg.TLS != nil {
		opts = append(opts, WithTLS(*cfg.TLS))
	}
	t, err := NewGRPCTransport(lis, opts...)
	if err != nil {
		lis.Close()
		return nil, err
	}
	defer t.Close()
	ring, err := NewRing(ctx, t, Config{
		RunID: cfg.RunID, Generation: 1, Members: cfg.Members, Rank: cfg.Rank, Identities: cfg.Identities,
		PeerTimeout: cfg.PeerTimeout, ConnectTimeout: cfg.ConnectTimeout, ChunkBytes: cfg.ChunkBytes, Logger: cfg.Logger,
	})
	if err != nil {
		return nil, err
	}
	defer ring.Close()

	n := len(cfg.Members)
	want := float32(n * (n + 1) / 2)
	var results []BenchResult
	for _, mib := range cfg.SizesMiB {
		elems := int(mib * (1 << 20) / 4)
		buf := make([]float32, elems)
		times := make([]float64, 0, cfg.Iters)
		cpus := make([]float64, 0, cfg.Iters)
		ok := true
		for i := range cfg.Warmup + cfg.Iters {
			for j := range buf {
				buf[j] = float32(cfg.Rank + 1)
			}
			if err := ring.Barrier(ctx); err != nil {
				return results, err
			}
			cpu0 := cputime.Process()
			start := time.Now()
			if err := ring.AllReduce(ctx, buf); err != nil {
				return results, err
			}
			el := time.Since(start)
			if i >= cfg.Warmup {
				times = append(times, el.Seconds())
				cpus = append(cpus, (cputime.Process() - cpu0).Seconds())
			}
			for _, v := range buf {
				if v != want {
					ok = false
					break
				}
			}
		}
		// Every rank's verdict, summed: correct only if all ranks agree.
		verdict := []float32{0}
		if ok {
			verdict[0] = 1
		}
		if err := ring.AllReduce(ctx, verdict); err != nil {
			return results, err
		}
		system := "ringtrain-allreduce"
		if cfg.TLS != nil {
			system += "-tls"
		}
		r := busResult(system, n, mib, int64(elems*4), times, verdict[0] == float32(n))
		r.CPUms = round3(median(cpus) * 1000)
		results = append(results, r)
	}
	// Leave together, so that nobody's Close fails a peer's last collective.
	if err := ring.Barrier(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return results, err
	}
	return results, nil
}

// benchPlan fills in the defaults of both benchmarks: sizes 1, 4, 16 and
// 64 MiB; warmup 3 (negative: none); 20 timed iterations.
func benchPlan(sizes []float64, warmup, iters int) ([]float64, int, int) {
	if len(sizes) == 0 {
		sizes = []float64{1, 4, 16, 64}
	}
	if warmup == 0 {
		warmup = 3
	}
	if iters <= 0 {
		iters = 20
	}
	return sizes, max(warmup, 0), iters
}

// busResult is one size's figures from its timed iterations (seconds): the
// median, algorithm bandwidth bytes/median and bus bandwidth algbw·2(N−1)/N.
func busResult(system string, n int, mib float64, bytes int64, times []float64, correct bool) BenchResult {
	med := median(times)
	algbw := float64(bytes) / med / 1e9
	return BenchResult{
		System: system, Workers: n, MiB: mib,
		MsMedian:  round3(med * 1000),
		AlgBWGBps: round3(algbw),
		BusBWGBps: round3(algbw * 2 * float64(n-1) / float64(n)),
		Correct:   correct,
	}
}

// median sorts xs and returns its median.
func median(xs []float64) float64 {
	slices.Sort(xs)
	med := xs[len(xs)/2]
	if len(xs)%2 == 0 {
		med = (xs[len(xs)/2-1] + xs[len(xs)/2]) / 2
	}
	return med
}

func round3(x float64) float64 {
	return float64(int64(x*1000+0.5)) / 1000
}
