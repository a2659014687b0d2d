package nn

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"
)

var xor = Batch{
	X:       []float32{0, 0, 0, 1, 1, 0, 1, 1},
	Labels:  []int32{0, 1, 1, 0},
	Targets: []float32{0, 1, 1, 0},
	N:       4,
}

func TestLearnsXOR(t *testing.T) {
	for _, c := range []struct {
		spec Spec
		opt  OptimizerConfig
		lr   float64
	}{
		{Spec{Layers: []int{2, 8, 2}, Activation: "tanh", Loss: "cross_entropy"}, OptimizerConfig{Name: "momentum", Momentum: 0.9}, 0.1},
		{Spec{Layers: []int{2, 4, 1}, Activation: "tanh", Loss: "bce"}, OptimizerConfig{Name: "adam"}, 0.05},
		{Spec{Layers: []int{2, 8, 1}, Activation: "relu", Loss: "mse"}, OptimizerConfig{Name: "nesterov", Momentum: 0.9}, 0.05},
	} {
		t.Run(c.spec.Loss, func(t *testing.T) {
			n, err := NewNetwork(c.spec)
			if err != nil {
				t.Fatal(err)
			}
			if err := n.Init("glorot", rand.New(rand.NewPCG(42, 1))); err != nil {
				t.Fatal(err)
			}
			opt, err := NewOptimizer(c.opt, len(n.Params))
			if err != nil {
				t.Fatal(err)
			}
			b := xor
			if c.spec.Loss != "cross_entropy" {
				b.Labels = nil
			} else {
				b.Targets = nil
			}
			const steps = 1000
			for range steps {
				n.ComputeGradients(b, 1.0/float32(b.N))
				opt.Step(n.Params, n.Grads, c.lr)
			}
			loss, _ := n.Evaluate(b, 0)
			y := n.Forward(b.X, b.N)
			correct := 0
			for i := range 4 {
				var pred int
				switch c.spec.Loss {
				case "cross_entropy":
					pred = argmax(y[2*i : 2*i+2])
				default:
					if y[i] >= 0.5 {
						pred = 1
					}
				}
				if int32(pred) == xor.Labels[i] {
					correct++
				}
			}
			if mean := loss / 4; correct != 4 || mean > 0.02 {
				t.Errorf("after %d steps: %d/4 correct, mean loss %.4g (want 4/4, <= 0.02); outputs %v", steps, correct, mean, y)
			}
		})
	}
}

// sinProblem is 40 points of sin on [-π, π].
func sinProblem() Batch {
	b := Batch{N: 40, X: make([]float32, 40), Targets: make([]float32, 40)}
	for i := range 40 {
		x := -math.Pi + 2*math.Pi*float64(i)/39
		b.X[i] = float32(x)
		b.Targets[i] = float32(math.Sin(x))
	}
	return b
}

// TestLevenbergMarquardtBeatsSGD fits sin with a 1-8-1 tanh network from the
// same start with LM and with full-batch SGD with momentum, and compares the
// number of iterations each needs to reach a mean squared error of 1e-3.
func TestLevenbergMarquardtBeatsSGD(t *testing.T) {
	const target = 1e-3
	spec := Spec{Layers: []int{1, 8, 1}, Activation: "tanh", Loss: "mse"}
	b := sinProblem()
	start, _ := NewNetwork(spec)
	if err := start.Init("glorot", rand.New(rand.NewPCG(7, 7))); err != nil {
		t.Fatal(err)
	}

	n := start.Clone()
	lm, err := NewLevenbergMarquardt(n, LMConfig{})
	if err != nil {
		t.Fatal(err)
	}
	lmIters := -1
	for it := 1; it <= 200; it++ {
		loss, err := lm.Step(b)
		if err != nil {
			t.Fatalf("LM iteration %d: %v", it, err)
		}
		if loss <= target {
			lmIters = it
			break
		}
	}
	if lmIters < 0 {
		t.Fatalf("LM did not reach mse %g in 200 iterations", target)
	}
	if got, _ := n.Evaluate(b, 0); got/40 > target {
		t.Errorf("LM reported reaching the target but Evaluate says %g", got/40)
	}

	s := start.Clone()
	opt, _ := NewOptimizer(OptimizerConfig{Name: "momentum", Momentum: 0.9}, len(s.Params))
	sgdIters := -1
	for it := 1; it <= 20000; it++ {
		loss := s.ComputeGradients(b, 1.0/40) / 40
		if loss <= target {
			sgdIters = it - 1 // the loss before this iteration's update
			break
		}
		opt.Step(s.Params, s.Grads, 0.05)
	}
	t.Logf("iterations to mse %g: Levenberg-Marquardt %d, SGD with momentum %d (-1: not within 20000)", target, lmIters, sgdIters)
	if lmIters > 150 {
		t.Errorf("LM needed %d iterations, want <= 150", lmIters)
	}
	if sgdIters >= 0 && sgdIters < 10*lmIters {
		t.Errorf("SGD needed %d iterations, LM %d: want LM at least 10x fewer", sgdIters, lmIters)
	}
}

func TestLevenbergMarquardtRejects(t *testing.T) {
	ce, _ := NewNetwork(Spec{Layers: []int{2, 3, 2}, Activation: "tanh", Loss: "cross_entropy"})
	if _, err := NewLevenbergMarquardt(ce, LMConfig{}); err == nil {
		t.Error("LM accepted cross_entropy")
	}
	big, _ := NewNetwork(Spec{Layers: []int{100, 100, 1}, Activation: "tanh", Loss: "mse"})
	if _, err := NewLevenbergMarquardt(big, LMConfig{}); err == nil {
		t.Error("LM accepted 10201 parameters")
	}
	if _, err := NewLevenbergMarquardt(big, LMConfig{MuDown: 2}); err == nil {
		t.Error("LM accepted mu_down 2")
	}

	// At an exact fit no step can lower the loss: damping rises to the limit
	// and the parameters stay put.
	n, _ := NewNetwork(Spec{Layers: []int{1, 1}, Loss: "mse"})
	n.Params[0], n.Params[1] = 2, 1
	b := Batch{X: []float32{0, 1, 2}, Targets: []float32{1, 3, 5}, N: 3}
	lm, _ := NewLevenbergMarquardt(n, LMConfig{MaxMu: 1e3})
	loss, err := lm.Step(b)
	if !errors.Is(err, ErrDampingLimit) || loss != 0 || n.Params[0] != 2 || n.Params[1] != 1 {
		t.Errorf("Step at the optimum = %v, %v, params %v; want 0, ErrDampingLimit, unchanged", loss, err, n.Params)
	}
}

// TestLevenbergMarquardtLinear: for a linear model Gauss-Newton is exact, so
// one step with tiny damping solves least squares.
func TestLevenbergMarquardtLinear(t *testing.T) {
	n, _ := NewNetwork(Spec{Layers: []int{2, 1}, Loss: "mse"})
	// t = 3x0 - 2x1 + 0.5
	b := Batch{X: []float32{0, 0, 1, 0, 0, 1, 1, 1, 2, -1}, N: 5, Targets: []float32{0.5, 3.5, -1.5, 1.5, 8.5}}
	lm, _ := NewLevenbergMarquardt(n, LMConfig{Mu: 1e-9})
	loss, err := lm.Step(b)
	if err != nil {
		t.Fatal(err)
	}
	want := []float64{3, -2, 0.5}
	for i, w := range want {
		approx(t, "param", float64(n.Params[i]), w, 1e-4)
	}
	approx(t, "loss", loss, 0, 1e-8)
}
