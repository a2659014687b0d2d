package nn

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"gonum.org/v1/gonum/diff/fd"
)

// numericGradient is the central-difference gradient of the float64 oracle
// refLoss at the network's parameters.
func numericGradient(spec Spec, params []float32, b Batch) []float64 {
	return fd.Gradient(nil, func(p []float64) float64 { return refLoss(spec, p, b) }, toFloat64(params),
		&fd.Settings{Formula: fd.Central, Step: 1e-6})
}

// gradientMismatch returns a description of the first element where got and
// want differ by more than 1e-4 + 1e-3*|want|, or "" when they agree.
func gradientMismatch(got []float32, want []float64) string {
	for i := range want {
		if d := math.Abs(float64(got[i]) - want[i]); d > 1e-4+1e-3*math.Abs(want[i]) || math.IsNaN(d) {
			return fmt.Sprintf("param %d: backprop %.7g, finite difference %.7g", i, got[i], want[i])
		}
	}
	return ""
}

func checkGradients(t *testing.T, spec Spec, seed uint64) {
	t.Helper()
	n := newTestNetwork(t, spec, seed)
	b := randomBatch(rand.New(rand.NewPCG(seed, 9)), spec, 4)
	const scale = 0.5
	loss := n.ComputeGradients(b, scale)
	params64 := toFloat64(n.Params)
	if want := refLoss(spec, params64, b); math.Abs(loss-want) > 1e-5*(1+math.Abs(want)) {
		t.Errorf("loss = %.9g, oracle %.9g", loss, want)
	}
	num := numericGradient(spec, n.Params, b)
	for i := range num {
		num[i] *= scale
	}
	if msg := gradientMismatch(n.Grads, num); msg != "" {
		t.Errorf("%s", msg)
	}
}

// TestGradientsMatchFiniteDifferences checks backprop against central
// differences of the float64 oracle for every hidden activation with every
// loss, on three dense layers.
func TestGradientsMatchFiniteDifferences(t *testing.T) {
	for _, loss := range allLosses {
		for i, act := range allActivations {
			spec := Spec{Layers: []int{3, 5, 4, 3}, Activation: act, Loss: loss}
			t.Run(loss+"/"+act, func(t *testing.T) { checkGradients(t, spec, uint64(10+i)) })
		}
	}
}

// TestOutputActivationGradients covers every output activation the losses
// accept, softmax's Jacobian-vector product at the output included.
func TestOutputActivationGradients(t *testing.T) {
	for _, loss := range []string{"mse", "cross_entropy"} {
		for i, out := range allActivations {
			if loss == "cross_entropy" && out == "softmax" {
				continue
			}
			spec := Spec{Layers: []int{4, 6, 3}, Activation: "tanh", Output: out, Loss: loss}
			t.Run(loss+"/"+out, func(t *testing.T) { checkGradients(t, spec, uint64(30+i)) })
		}
	}
	t.Run("bce/logistic", func(t *testing.T) {
		checkGradients(t, Spec{Layers: []int{4, 6, 3}, Activation: "gelu", Output: "logistic", Loss: "bce"}, 50)
	})
	t.Run("single layer", func(t *testing.T) {
		checkGradients(t, Spec{Layers: []int{5, 3}, Loss: "cross_entropy"}, 51)
	})
	t.Run("deep", func(t *testing.T) {
		checkGradients(t, Spec{Layers: []int{3, 6, 5, 4, 2}, Activation: "softmax", Loss: "mse"}, 52)
	})
}

// TestGradientCheckCanFail makes sure the comparison above rejects a gradient
// that is wrong in one element.
func TestGradientCheckCanFail(t *testing.T) {
	spec := Spec{Layers: []int{3, 4, 2}, Activation: "tanh", Loss: "mse"}
	n := newTestNetwork(t, spec, 3)
	b := randomBatch(rand.New(rand.NewPCG(3, 3)), spec, 3)
	n.ComputeGradients(b, 1)
	num := numericGradient(spec, n.Params, b)
	if msg := gradientMismatch(n.Grads, num); msg != "" {
		t.Fatalf("correct gradient rejected: %s", msg)
	}
	n.Grads[5] *= 1.01
	if gradientMismatch(n.Grads, num) == "" {
		t.Fatal("a gradient off by 1% in one element was accepted")
	}
}

// TestForwardMatchesOracle compares Forward's outputs with the oracle's.
func TestForwardMatchesOracle(t *testing.T) {
	for i, loss := range allLosses {
		spec := Spec{Layers: []int{4, 7, 3}, Activation: "mish", Loss: loss}
		n := newTestNetwork(t, spec, uint64(60+i))
		b := randomBatch(rand.New(rand.NewPCG(1, uint64(i))), spec, 5)
		y := n.Forward(b.X, b.N)
		for r := range b.N {
			_, a := refOutput(spec, toFloat64(n.Params), toFloat64(b.X[r*4:(r+1)*4]))
			if loss == "cross_entropy" {
				a = refActivation("softmax", a)
			}
			for j, want := range a {
				if got := float64(y[r*3+j]); math.Abs(got-want) > 1e-6 {
					t.Errorf("%s: output[%d][%d] = %v, want %v", loss, r, j, got, want)
				}
			}
		}
	}
}
