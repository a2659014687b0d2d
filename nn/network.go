package nn

import (
	"errors"
	"math"
	"math/rand/v2"

	"github.com/ringtrain/ringtrain/nn/internal/fixed"
)

// Network is a fully connected feed-forward network with its parameters, their
// gradients and the scratch space of one forward and backward pass.
type Network struct {
	// Spec is the validated description the network was built from. Treat it
	// as read-only.
	Spec Spec
	// Params holds all weights and biases in one buffer. Dense layer i (from the
	// input) occupies out*in weights, row-major [out, in] as in PyTorch's
	// nn.Linear, then out biases; layers follow each other in order.
	Params []float32
	// Grads has the layout and length of Params. ComputeGradients overwrites it.
	Grads []float32

	r       resolved
	offsets []int // offsets[i] is where layer i's weights start in Params
	ws      workspace
}

// workspace is the per-batch scratch of a Network, grown on demand and reused,
// so that steady-state training allocates nothing.
type workspace struct {
	rows  int         // rows every buffer below can hold
	z     [][]float32 // pre-activations per layer; aliases a[l] when the hidden activation does not need z
	a     [][]float32 // activations per layer
	d     [][]float32 // deltas ∂loss/∂z per layer
	probs []float32   // network outputs for cross_entropy (softmax of the logits)
	// Exact training's (BackwardMicro): the rows of each micro-shard, the
	// fixed-point kernel's scratch, one micro-shard's bias gradient.
	micro   []int32
	fixed   fixed.Scratch
	colSums []float32
}

// NewNetwork validates spec and returns a network with all parameters zero;
// call Init before training.
func NewNetwork(spec Spec) (*Network, error) {
	r, err := spec.resolve()
	if err != nil {
		return nil, err
	}
	spec.Layers = append([]int(nil), spec.Layers...)
	n := &Network{Spec: spec, r: r}
	n.offsets = make([]int, n.NumLayers())
	off := 0
	for i := range n.offsets {
		n.offsets[i] = off
		off += spec.Layers[i+1] * (spec.Layers[i] + 1)
	}
	n.Params = make([]float32, off)
	n.Grads = make([]float32, off)
	return n, nil
}

// Init draws the weights and zeroes the biases. method is "he" (Kaiming
// normal, standard deviation sqrt(2/in)) or "glorot" (Xavier uniform on
// ±sqrt(6/(in+out))). Weights are drawn from rng layer by layer in Params
// order, so the result is a function of the seed.
func (n *Network) Init(method string, rng *rand.Rand) error {
	if rng == nil {
		return errors.New("nn: Init: rng is nil; pass a seeded *rand.Rand, e.g. rand.New(rand.NewPCG(1, 2))")
	}
	if method != "he" && method != "glorot" {
		return configErr("init method", method, "unknown", "use one of he, glorot")
	}
	for i := range n.NumLayers() {
		in, out := n.Spec.Layers[i], n.Spec.Layers[i+1]
		w := n.Weight(i)
		switch method {
		case "he":
			std := math.Sqrt(2 / float64(in))
			for j := range w {
				w[j] = float32(rng.NormFloat64() * std)
			}
		case "glorot":
			limit := math.Sqrt(6 / float64(in+out))
			for j := range w {
				w[j] = float32((2*rng.Float64() - 1) * limit)
			}
		}
		clear(n.Bias(i))
	}
	return nil
}

// NumLayers is the number of dense layers, len(Spec.Layers)-1.
func (n *Network) NumLayers() int { return len(n.Spec.Layers) - 1 }

// Weight is layer i's weight matrix [out, in], row-major, as a view into Params.
func (n *Network) Weight(i int) []float32 { return n.view("Weight", n.Params, i, false) }

// Bias is layer i's bias [out] as a view into Params.
func (n *Network) Bias(i int) []float32 { return n.view("Bias", n.Params, i, true) }

// WeightGrad is the gradient of Weight(i), a view into Grads.
func (n *Network) WeightGrad(i int) []float32 { return n.view("WeightGrad", n.Grads, i, false) }

// BiasGrad is the gradient of Bias(i), a view into Grads.
func (n *Network) BiasGrad(i int) []float32 { return n.view("BiasGrad", n.Grads, i, true) }

func (n *Network) view(op string, buf []float32, i int, bias bool) []float32 {
	if i < 0 {
		panic(&ShapeError{Op: op, Arg: "layer", Got: i, Want: 0, Rel: ">="})
	}
	if i >= n.NumLayers() {
		panic(&ShapeError{Op: op, Arg: "layer", Got: i, Want: n.NumLayers(), Rel: "<"})
	}
	in, out := n.Spec.Layers[i], n.Spec.Layers[i+1]
	start, end := n.offsets[i], n.offsets[i]+out*in
	if bias {
		start, end = end, end+out
	}
	return buf[start:end:end]
}

// Clone returns a deep copy of the parameters and gradients sharing nothing
// with n. Its scratch space starts empty.
func (n *Network) Clone() *Network {
	c := &Network{Spec: n.Spec, r: n.r}
	c.Spec.Layers = append([]int(nil), n.Spec.Layers...)
	c.offsets = append([]int(nil), n.offsets...)
	c.Params = append([]float32(nil), n.Params...)
	c.Grads = append([]float32(nil), n.Grads...)
	return c
}

// ensure grows the workspace to hold rows examples.
func (n *Network) ensure(rows int) {
	ws := &n.ws
	if rows <= ws.rows {
		return
	}
	layers := n.NumLayers()
	ws.z = make([][]float32, layers)
	ws.a = make([][]float32, layers)
	ws.d = make([][]float32, layers)
	for l := range layers {
		size := rows * n.Spec.Layers[l+1]
		ws.a[l] = make([]float32, size)
		ws.d[l] = make([]float32, size)
		if l == layers-1 || n.r.hidden.needsZ() {
			ws.z[l] = make([]float32, size)
		} else {
			ws.z[l] = ws.a[l]
		}
	}
	if n.r.loss == lossCrossEntropy {
		ws.probs = make([]float32, rows*n.Spec.Layers[layers])
	}
	ws.rows = rows
}
