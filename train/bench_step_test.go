package train

import (
	"context"
	"math/rand/v2"
	"testing"

	"github.com/ringtrain/ringtrain/dataset"
	"github.com/ringtrain/ringtrain/internal/cputime"
	"github.com/ringtrain/ringtrain/nn"
)

// benchStep times one rank's whole training step (forward, backward, the
// reduction, the update) on the reference MLP in one process: the cost of
// exact training against the float32 step, without a network.
func benchStep(b *testing.B, exact bool, micro int) {
	nn.SetThreads(1)
	const n, in, out = 1024, 784, 10
	rng := rand.New(rand.NewPCG(2, 2))
	data := &dataset.Set{X: make([]float32, n*in), Labels: make([]int32, n), N: n, Dim: in, Classes: out}
	for i := range data.X {
		data.X[i] = rng.Float32()
	}
	for i := range data.Labels {
		data.Labels[i] = int32(rng.IntN(out))
	}
	cfg := DefaultConfig()
	cfg.Layers, cfg.Batch, cfg.LR = "784-512-512-10", 256, 0.05
	cfg.Schedule, cfg.Shuffle, cfg.Steps = "constant", false, 1<<40
	cfg.Data, cfg.Threads, cfg.Exact, cfg.MicroBatch = "random", 1, exact, micro
	st, err := NewState(cfg, data)
	if err != nil {
		b.Fatal(err)
	}
	s := NewStepper(st, data, SingleProcess{})
	b.ResetTimer()
	cpu0 := cputime.Process()
	for range b.N {
		if _, err := s.Step(context.Background(), false); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(cfg.Batch)*float64(b.N)/b.Elapsed().Seconds(), "samples/s")
	// The process's CPU time per step: on a busy machine a steadier
	// figure than the wall clock.
	b.ReportMetric(float64((cputime.Process()-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
}

func BenchmarkStepExact(b *testing.B)   { benchStep(b, true, DefaultMicroBatch) }
func BenchmarkStepExact32(b *testing.B) { benchStep(b, true, 32) }
func BenchmarkStepFloat(b *testing.B)   { benchStep(b, false, DefaultMicroBatch) }
