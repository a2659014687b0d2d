package nn_test

import (
	"fmt"
	"math/rand/v2"

	"github.com/ringtrain/ringtrain/nn"
)

// A single-process training loop: scale 1/N makes Grads the mean gradient.
func Example() {
	spec := nn.Spec{Layers: []int{2, 8, 2}, Activation: "tanh", Loss: "cross_entropy"}
	net, err := nn.NewNetwork(spec)
	if err != nil {
		panic(err)
	}
	if err := net.Init("glorot", rand.New(rand.NewPCG(1, 2))); err != nil {
		panic(err)
	}
	opt, err := nn.NewOptimizer(nn.OptimizerConfig{Name: "adam"}, len(net.Params))
	if err != nil {
		panic(err)
	}
	sched := nn.Schedule{Kind: "cosine", WarmupSteps: 10, TotalSteps: 500}
	xor := nn.Batch{X: []float32{0, 0, 0, 1, 1, 0, 1, 1}, Labels: []int32{0, 1, 1, 0}, N: 4}
	for step := range 500 {
		net.ComputeGradients(xor, 1/float32(xor.N))
		nn.ClipGradNorm(net.Grads, 5)
		opt.Step(net.Params, net.Grads, sched.LR(0.05, step))
	}
	_, correct := net.Evaluate(xor, 0)
	fmt.Printf("%d/4 correct\n", correct)
	// Output: 4/4 correct
}

func ExampleSpec_Validate() {
	err := nn.Spec{Layers: []int{784, 512, 10}, Activation: "relux", Loss: "cross_entropy"}.Validate()
	fmt.Println(err)
	// Output: nn: activation "relux" unknown; use one of identity, logistic, tanh, relu, leaky_relu, softmax, swish, mish, gelu
}

func ExampleParseLayers() {
	layers, err := nn.ParseLayers("784-512-512-10")
	fmt.Println(layers, err)
	_, err = nn.ParseLayers("784-0-10")
	fmt.Println(err)
	// Output:
	// [784 512 512 10] <nil>
	// nn: layers "784-0-10" has non-positive width 0 at position 1; write at least two positive widths from the input joined by '-', e.g. 784-512-10
}
