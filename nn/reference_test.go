package nn

import (
	"math"
	"math/rand/v2"
	"testing"
)

// This file is the test oracle: a per-example float64 network written from the
// definitions, sharing no code with the package under test.

var allActivations = []string{"identity", "logistic", "tanh", "relu", "leaky_relu", "softmax", "swish", "mish", "gelu"}
var allLosses = []string{"cross_entropy", "bce", "mse"}

func refActivation(name string, z []float64) []float64 {
	a := make([]float64, len(z))
	switch name {
	case "softmax":
		var sum float64
		for j, v := range z {
			a[j] = math.Exp(v)
			sum += a[j]
		}
		for j := range a {
			a[j] /= sum
		}
		return a
	}
	for j, x := range z {
		switch name {
		case "identity":
			a[j] = x
		case "logistic":
			a[j] = 1 / (1 + math.Exp(-x))
		case "tanh":
			a[j] = math.Tanh(x)
		case "relu":
			a[j] = math.Max(x, 0)
		case "leaky_relu":
			a[j] = x
			if x < 0 {
				a[j] = 0.01 * x
			}
		case "swish":
			a[j] = x / (1 + math.Exp(-x))
		case "mish":
			a[j] = x * math.Tanh(math.Log(1+math.Exp(x)))
		case "gelu":
			a[j] = x * 0.5 * (1 + math.Erf(x/math.Sqrt2))
		default:
			panic("refActivation: " + name)
		}
	}
	return a
}

// refOutput runs one example through the network described by spec with
// float64 parameters laid out as Network.Params. It returns the last
// layer's pre-activation and activation.
func refOutput(spec Spec, params []float64, x []float64) (z, a []float64) {
	a = x
	off := 0
	for l := 0; l+1 < len(spec.Layers); l++ {
		in, out := spec.Layers[l], spec.Layers[l+1]
		w, b := params[off:off+out*in], params[off+out*in:off+out*in+out]
		off += out * (in + 1)
		z = make([]float64, out)
		for p := range out {
			z[p] = b[p]
			for q := range in {
				z[p] += w[p*in+q] * a[q]
			}
		}
		f := spec.Activation
		if l+2 == len(spec.Layers) {
			f = spec.Output
			if f == "" {
				f = map[string]string{"cross_entropy": "identity", "mse": "identity", "bce": "logistic"}[spec.Loss]
			}
		}
		a = refActivation(f, z)
	}
	return z, a
}

// refLoss is the sum over the batch of the per-example losses.
func refLoss(spec Spec, params []float64, b Batch) float64 {
	in, out := spec.Layers[0], spec.Layers[len(spec.Layers)-1]
	var total float64
	for i := range b.N {
		x := make([]float64, in)
		for q := range x {
			x[q] = float64(b.X[i*in+q])
		}
		z, a := refOutput(spec, params, x)
		switch spec.Loss {
		case "cross_entropy":
			var sum float64
			for _, v := range a {
				sum += math.Exp(v)
			}
			total += math.Log(sum) - a[b.Labels[i]]
		case "bce":
			var sum float64
			for j, zj := range z {
				t := float64(b.Targets[i*out+j])
				p := 1 / (1 + math.Exp(-zj))
				sum += -(t*math.Log(p) + (1-t)*math.Log(1-p))
			}
			total += sum / float64(out)
		case "mse":
			var sum float64
			for j, y := range a {
				e := y - float64(b.Targets[i*out+j])
				sum += e * e
			}
			total += sum / float64(out)
		}
	}
	return total
}

// randomBatch draws inputs from N(0,1), labels uniformly and targets in (0,1).
func randomBatch(rng *rand.Rand, spec Spec, n int) Batch {
	in, out := spec.Layers[0], spec.Layers[len(spec.Layers)-1]
	b := Batch{X: make([]float32, n*in), N: n}
	for i := range b.X {
		b.X[i] = float32(rng.NormFloat64())
	}
	if spec.Loss == "cross_entropy" {
		b.Labels = make([]int32, n)
		for i := range b.Labels {
			b.Labels[i] = int32(rng.IntN(out))
		}
	} else {
		b.Targets = make([]float32, n*out)
		for i := range b.Targets {
			b.Targets[i] = float32(0.05 + 0.9*rng.Float64())
		}
	}
	return b
}

func newTestNetwork(t testing.TB, spec Spec, seed uint64) *Network {
	t.Helper()
	n, err := NewNetwork(spec)
	if err != nil {
		t.Fatalf("NewNetwork(%+v): %v", spec, err)
	}
	if err := n.Init("glorot", rand.New(rand.NewPCG(seed, 7))); err != nil {
		t.Fatal(err)
	}
	// Non-zero biases, so that bias gradients flow through a non-trivial path.
	rng := rand.New(rand.NewPCG(seed, 8))
	for l := range n.NumLayers() {
		for j := range n.Bias(l) {
			n.Bias(l)[j] = float32(0.3 * rng.NormFloat64())
		}
	}
	return n
}

func toFloat64(x []float32) []float64 {
	y := make([]float64, len(x))
	for i, v := range x {
		y[i] = float64(v)
	}
	return y
}
