package nn

import (
	"math/rand/v2"
	"testing"
)

// BenchmarkTrainStep784 is one training step of a 784-512-512-10 ReLU MLP
// with softmax cross-entropy on a batch of 256, on one thread:
// ComputeGradients followed by an SGD-with-momentum update. Compare with
// PyTorch under torch.set_num_threads(1).
//
// FLOP count: 2·N·in·out for each of the forward GEMM, the weight-gradient GEMM
// and, for every layer but the first, the delta GEMM.
func BenchmarkTrainStep784(b *testing.B) {
	benchmarkTrainStep(b, []int{784, 512, 512, 10}, 256)
}

func benchmarkTrainStep(b *testing.B, layers []int, batch int) {
	SetThreads(1)
	spec := Spec{Layers: layers, Activation: "relu", Loss: "cross_entropy"}
	n, err := NewNetwork(spec)
	if err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	if err := n.Init("he", rng); err != nil {
		b.Fatal(err)
	}
	data := randomBatch(rng, spec, batch)
	opt, err := NewOptimizer(OptimizerConfig{Name: "momentum", Momentum: 0.9}, len(n.Params))
	if err != nil {
		b.Fatal(err)
	}
	var flops float64
	for l := 0; l+1 < len(layers); l++ {
		gemms := 3.0
		if l == 0 {
			gemms = 2
		}
		flops += gemms * 2 * float64(batch) * float64(layers[l]) * float64(layers[l+1])
	}
	n.ComputeGradients(data, 1/float32(batch)) // size the scratch space outside the timing
	b.ReportAllocs()
	for b.Loop() {
		n.ComputeGradients(data, 1/float32(batch))
		opt.Step(n.Params, n.Grads, 0.01)
	}
	sec := b.Elapsed().Seconds() / float64(b.N)
	b.ReportMetric(sec*1e3, "ms/step")
	b.ReportMetric(flops/sec/1e9, "GFLOP/s")
}
