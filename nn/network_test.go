package nn

import (
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

func approx(t *testing.T, what string, got, want, tol float64) {
	t.Helper()
	if math.Abs(got-want) > tol || math.IsNaN(got) {
		t.Errorf("%s = %.9g, want %.9g (±%g)", what, got, want, tol)
	}
}

// TestHandComputed221 checks a 2-2-1 network with logistic hidden units and
// mse against values worked out by hand:
//
//	x = (1, 2), t = 0.5
//	W1 = [[0.1 0.2] [0.3 0.4]], b1 = (0.1, -0.1), W2 = [0.5 -0.6], b2 = 0.2
//	z1 = (0.1+0.4+0.1, 0.3+0.8-0.1) = (0.6, 1.0)
//	a1 = (σ(0.6), σ(1)) = (0.6456563062, 0.7310585786)
//	y  = 0.5·0.6456563062 - 0.6·0.7310585786 + 0.2 = 0.0841930059
//	loss = (y - t)² = 0.1728954563
//	δ2 = 2(y - t) = -0.8316139881;  ∂W2 = δ2·a1;  ∂b2 = δ2
//	δ1 = W2ᵀδ2 ∘ a1(1-a1) = (-0.0951300873, 0.0981031404);  ∂W1 = δ1 xᵀ;  ∂b1 = δ1
func TestHandComputed221(t *testing.T) {
	n, err := NewNetwork(Spec{Layers: []int{2, 2, 1}, Activation: "logistic", Loss: "mse"})
	if err != nil {
		t.Fatal(err)
	}
	copy(n.Params, []float32{0.1, 0.2, 0.3, 0.4, 0.1, -0.1, 0.5, -0.6, 0.2})
	b := Batch{X: []float32{1, 2}, Targets: []float32{0.5}, N: 1}
	y := n.Forward(b.X, 1)
	approx(t, "y", float64(y[0]), 0.08419300593489476, 1e-6)
	loss := n.ComputeGradients(b, 1)
	approx(t, "loss", loss, 0.17289545631345846, 1e-6)
	want := []float64{
		-0.09513008731375092, -0.19026017462750183, 0.09810314035016365, 0.1962062807003273, // ∂W1
		-0.09513008731375092, 0.09810314035016365, // ∂b1
		-0.5369368157818541, -0.6079585401313015, // ∂W2
		-0.8316139881302105, // ∂b2
	}
	for i, w := range want {
		approx(t, "grad["+string(rune('0'+i))+"]", float64(n.Grads[i]), w, 1e-6)
	}
	// The views address the same numbers.
	approx(t, "WeightGrad(1)[1]", float64(n.WeightGrad(1)[1]), want[7], 1e-6)
	approx(t, "BiasGrad(0)[1]", float64(n.BiasGrad(0)[1]), want[5], 1e-6)
	if got := n.Weight(0)[2]; got != 0.3 {
		t.Errorf("Weight(0)[2] = %v, want 0.3 (row 1, column 0 of [out,in])", got)
	}
	if got := n.Bias(1)[0]; got != 0.2 {
		t.Errorf("Bias(1)[0] = %v, want 0.2", got)
	}
}

// TestBatchGradientIsMeanOfExampleGradients checks that one batch with
// scale 1/N gives the mean of the single-example gradients, that an SGD step
// on it equals the average of the per-example steps, and the data-parallel
// identity: shards with scale 1/B sum to the full batch's gradient.
func TestBatchGradientIsMeanOfExampleGradients(t *testing.T) {
	for _, loss := range allLosses {
		t.Run(loss, func(t *testing.T) {
			spec := Spec{Layers: []int{5, 7, 6, 4}, Activation: "relu", Loss: loss}
			n := newTestNetwork(t, spec, 4)
			const N = 6
			b := randomBatch(rand.New(rand.NewPCG(4, 4)), spec, N)
			full := n.Clone()
			fullLoss := full.ComputeGradients(b, 1.0/N)

			mean := make([]float64, len(n.Params))
			var lossSum float64
			for i := range N {
				lossSum += n.ComputeGradients(b.slice(i, 1, 5, 4), 1)
				for j, g := range n.Grads {
					mean[j] += float64(g) / N
				}
			}
			approx(t, "batch loss vs sum of example losses", fullLoss, lossSum, 1e-5)
			for j := range mean {
				approx(t, "grad", float64(full.Grads[j]), mean[j], 1e-6)
			}

			// One SGD step on the batch == average of the per-example steps.
			const lr = 0.1
			opt, _ := NewOptimizer(OptimizerConfig{Name: "sgd"}, len(full.Params))
			stepped := append([]float32(nil), full.Params...)
			opt.Step(stepped, full.Grads, lr)
			for j := range stepped {
				approx(t, "param after step", float64(stepped[j]), float64(full.Params[j])-lr*mean[j], 1e-6)
			}

			// Shards of sizes 1, 2, 3 of the global batch of 6, each with scale 1/6.
			sum := make([]float64, len(n.Params))
			start := 0
			for _, size := range []int{1, 2, 3} {
				worker := full.Clone()
				worker.ComputeGradients(b.slice(start, size, 5, 4), 1.0/N)
				for j, g := range worker.Grads {
					sum[j] += float64(g)
				}
				start += size
			}
			for j := range sum {
				approx(t, "sum of shard grads", sum[j], float64(full.Grads[j]), 1e-6)
			}
		})
	}
}

// TestComputeGradientsOverwrites checks that Grads is overwritten, not
// accumulated, and that a smaller batch after a larger one reuses the scratch.
func TestComputeGradientsOverwrites(t *testing.T) {
	spec := Spec{Layers: []int{3, 4, 2}, Activation: "tanh", Loss: "cross_entropy"}
	n := newTestNetwork(t, spec, 5)
	rng := rand.New(rand.NewPCG(5, 5))
	small, big := randomBatch(rng, spec, 2), randomBatch(rng, spec, 9)
	n.ComputeGradients(small, 1)
	want := append([]float32(nil), n.Grads...)
	for i := range n.Grads {
		n.Grads[i] = float32(math.NaN())
	}
	n.ComputeGradients(big, 1)
	n.ComputeGradients(small, 1)
	for i := range want {
		if n.Grads[i] != want[i] {
			t.Fatalf("Grads[%d] = %v after big then small batch, want %v", i, n.Grads[i], want[i])
		}
	}
	allocs := testing.AllocsPerRun(10, func() { n.ComputeGradients(big, 1) })
	if allocs != 0 {
		t.Errorf("ComputeGradients allocates %v times per call in steady state, want 0", allocs)
	}
}

// TestLossesStableAtHugeLogits feeds logits of ±1e4 through cross_entropy
// and bce: losses and gradients must be finite and exact.
func TestLossesStableAtHugeLogits(t *testing.T) {
	ce, err := NewNetwork(Spec{Layers: []int{2, 3}, Loss: "cross_entropy"})
	if err != nil {
		t.Fatal(err)
	}
	// logits = (1e4, -1e4, 0) for x = (1, 0).
	copy(ce.Weight(0), []float32{1e4, 0, -1e4, 0, 0, 0})
	x := []float32{1, 0, 1, 0, 1, 0}
	loss := ce.ComputeGradients(Batch{X: x, Labels: []int32{0, 1, 2}, N: 3}, 1)
	approx(t, "cross_entropy loss", loss, 0+2e4+1e4, 1e-3)
	for i, g := range ce.Grads {
		if math.IsNaN(float64(g)) || math.IsInf(float64(g), 0) {
			t.Fatalf("cross_entropy Grads[%d] = %v", i, g)
		}
	}
	// ∂loss/∂logits = p - onehot with p = (1, 0, 0): Σ over the three rows = (2, -1, -1).
	approx(t, "bias grad 0", float64(ce.BiasGrad(0)[0]), 2, 1e-6)
	approx(t, "bias grad 1", float64(ce.BiasGrad(0)[1]), -1, 1e-6)
	approx(t, "bias grad 2", float64(ce.BiasGrad(0)[2]), -1, 1e-6)
	p := ce.Forward([]float32{1, 0}, 1)
	if p[0] != 1 || p[1] != 0 || p[2] != 0 {
		t.Errorf("softmax = %v, want [1 0 0]", p)
	}

	bce, err := NewNetwork(Spec{Layers: []int{1, 1}, Loss: "bce"})
	if err != nil {
		t.Fatal(err)
	}
	bce.Weight(0)[0] = 1e4
	// z = 1e4, -1e4, 1e4, -1e4 with targets 0, 1, 1, 0: losses 1e4, 1e4, 0, 0.
	b := Batch{X: []float32{1, -1, 1, -1}, Targets: []float32{0, 1, 1, 0}, N: 4}
	loss = bce.ComputeGradients(b, 1)
	approx(t, "bce loss", loss, 2e4, 1e-3)
	// ∂/∂b = Σ (σ(z) - t) = 1 - 1 + 0 + 0 = 0; ∂/∂w = Σ (σ(z)-t)x = 1 + 1 = 2.
	approx(t, "bce weight grad", float64(bce.Grads[0]), 2, 1e-6)
	approx(t, "bce bias grad", float64(bce.Grads[1]), 0, 1e-6)
	lossSum, correct := bce.Evaluate(b, 3)
	approx(t, "bce Evaluate loss", lossSum, 2e4, 1e-3)
	if correct != 2 {
		t.Errorf("bce Evaluate correct = %d, want 2", correct)
	}
}

func TestEvaluate(t *testing.T) {
	for _, loss := range allLosses {
		spec := Spec{Layers: []int{3, 5, 4}, Activation: "swish", Loss: loss}
		n := newTestNetwork(t, spec, 6)
		b := randomBatch(rand.New(rand.NewPCG(6, 6)), spec, 11)
		grads := append([]float32(nil), n.Grads...)
		want := n.Clone().ComputeGradients(b, 1)
		// Count correct answers from Forward directly.
		y := append([]float32(nil), n.Forward(b.X, b.N)...)
		wantCorrect := 0
		for r := range b.N {
			row := y[r*4 : (r+1)*4]
			switch loss {
			case "cross_entropy":
				if argmax(row) == int(b.Labels[r]) {
					wantCorrect++
				}
			case "mse":
				if argmax(row) == argmax(b.Targets[r*4:(r+1)*4]) {
					wantCorrect++
				}
			case "bce":
				ok := true
				for j := range row {
					ok = ok && (row[j] >= 0.5) == (b.Targets[r*4+j] >= 0.5)
				}
				if ok {
					wantCorrect++
				}
			}
		}
		for _, chunk := range []int{0, 1, 4, 11, 100} {
			got, correct := n.Evaluate(b, chunk)
			approx(t, loss+" Evaluate loss", got, want, 1e-5)
			if correct != wantCorrect {
				t.Errorf("%s chunk %d: correct = %d, want %d", loss, chunk, correct, wantCorrect)
			}
		}
		for i := range grads {
			if grads[i] != n.Grads[i] {
				t.Fatalf("Evaluate changed Grads")
			}
		}
	}
}

func TestShapeAndLabelPanics(t *testing.T) {
	n, err := NewNetwork(Spec{Layers: []int{3, 2}, Loss: "cross_entropy"})
	if err != nil {
		t.Fatal(err)
	}
	expectPanic := func(name string, want any, f func()) {
		t.Helper()
		defer func() {
			r := recover()
			switch want.(type) {
			case *ShapeError:
				if _, ok := r.(*ShapeError); !ok {
					t.Errorf("%s: recovered %v (%T), want *ShapeError", name, r, r)
				}
			case *LabelError:
				if _, ok := r.(*LabelError); !ok {
					t.Errorf("%s: recovered %v (%T), want *LabelError", name, r, r)
				}
			}
		}()
		f()
	}
	expectPanic("Forward short x", (*ShapeError)(nil), func() { n.Forward(make([]float32, 5), 2) })
	expectPanic("labels length", (*ShapeError)(nil), func() {
		n.ComputeGradients(Batch{X: make([]float32, 6), Labels: []int32{0}, N: 2}, 1)
	})
	expectPanic("label range", (*LabelError)(nil), func() {
		n.ComputeGradients(Batch{X: make([]float32, 3), Labels: []int32{2}, N: 1}, 1)
	})
	expectPanic("layer index", (*ShapeError)(nil), func() { n.Weight(1) })
	expectPanic("optimizer length", (*ShapeError)(nil), func() {
		o, _ := NewOptimizer(OptimizerConfig{Name: "sgd"}, 3)
		o.Step(make([]float32, 3), make([]float32, 2), 0.1)
	})
}

func TestInitAndClone(t *testing.T) {
	spec := Spec{Layers: []int{400, 300, 10}, Activation: "relu", Loss: "cross_entropy"}
	a, _ := NewNetwork(spec)
	b, _ := NewNetwork(spec)
	if err := a.Init("he", rand.New(rand.NewPCG(1, 1))); err != nil {
		t.Fatal(err)
	}
	if err := b.Init("he", rand.New(rand.NewPCG(1, 1))); err != nil {
		t.Fatal(err)
	}
	for i := range a.Params {
		if a.Params[i] != b.Params[i] {
			t.Fatal("Init with the same seed gave different parameters")
		}
	}
	w := a.Weight(0)
	var sum, sq float64
	for _, v := range w {
		sum += float64(v)
		sq += float64(v) * float64(v)
	}
	std := math.Sqrt(sq/float64(len(w)) - (sum/float64(len(w)))*(sum/float64(len(w))))
	approx(t, "he std", std, math.Sqrt(2.0/400), 0.002)
	for _, v := range a.Bias(0) {
		if v != 0 {
			t.Fatal("he: bias not zero")
		}
	}
	if err := b.Init("glorot", rand.New(rand.NewPCG(1, 1))); err != nil {
		t.Fatal(err)
	}
	limit := math.Sqrt(6.0 / 310)
	maxAbs := 0.0
	for _, v := range b.Weight(1) {
		maxAbs = max(maxAbs, math.Abs(float64(v)))
	}
	if maxAbs > limit || maxAbs < 0.95*limit {
		t.Errorf("glorot max |w| = %v, want just under %v", maxAbs, limit)
	}
	if err := a.Init("xavier", rand.New(rand.NewPCG(1, 1))); err == nil || !strings.Contains(err.Error(), `"xavier"`) {
		t.Errorf("Init(xavier) error = %v, want one naming the method", err)
	}
	if err := a.Init("he", nil); err == nil {
		t.Error("Init with nil rng: no error")
	}

	c := a.Clone()
	c.Params[0]++
	c.Spec.Layers[0] = 1
	if a.Params[0] == c.Params[0] || a.Spec.Layers[0] != 400 {
		t.Error("Clone shares memory with the original")
	}
}

func TestParseLayersAndValidate(t *testing.T) {
	got, err := ParseLayers("784-512-512-10")
	if err != nil || len(got) != 4 || got[0] != 784 || got[3] != 10 {
		t.Fatalf("ParseLayers = %v, %v", got, err)
	}
	for _, bad := range []string{"", "784", "784-0-10", "784--10", "784-x-10", "784--5"} {
		_, err := ParseLayers(bad)
		var ce *ConfigError
		if !errors.As(err, &ce) || !strings.Contains(err.Error(), `"`+bad+`"`) {
			t.Errorf("ParseLayers(%q) error = %v, want a *ConfigError naming the value", bad, err)
		}
	}
	spec := Spec{Layers: []int{2, 3, 2}, Activation: "relux", Loss: "cross_entropy"}
	err = spec.Validate()
	want := `nn: activation "relux" unknown; use one of identity, logistic, tanh, relu, leaky_relu, softmax, swish, mish, gelu`
	if err == nil || err.Error() != want {
		t.Errorf("Validate error = %v, want %s", err, want)
	}
	for _, c := range []struct {
		spec Spec
		want string // substring of the error, "" for valid
	}{
		{Spec{Layers: []int{2, 3, 2}, Activation: "silu", Loss: "mse"}, ""},
		{Spec{Layers: []int{2, 2}, Loss: "bce"}, ""},
		{Spec{Layers: []int{2, 3, 2}, Activation: "relu", Loss: "hinge"}, `loss "hinge" unknown`},
		{Spec{Layers: []int{2, 3, 2}, Activation: "", Loss: "mse"}, `activation "" unknown`},
		{Spec{Layers: []int{2, 3, 2}, Activation: "relu", Output: "softmax", Loss: "cross_entropy"}, "softmax twice"},
		{Spec{Layers: []int{2, 3, 2}, Activation: "relu", Output: "tanh", Loss: "bce"}, `output "tanh"`},
		{Spec{Layers: []int{2, 3, 2}, Activation: "relu", Output: "tan", Loss: "mse"}, `output "tan" unknown`},
		{Spec{Layers: []int{2, 3, 1}, Activation: "relu", Loss: "cross_entropy"}, "at least 2 classes"},
		{Spec{Layers: []int{2}, Loss: "mse"}, "fewer than 2"},
		{Spec{Layers: []int{2, -1, 2}, Activation: "relu", Loss: "mse"}, "non-positive width -1"},
	} {
		err := c.spec.Validate()
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%+v: unexpected error %v", c.spec, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%+v: error %v, want it to contain %q", c.spec, err, c.want)
		}
	}
	if got := (Spec{Layers: []int{784, 512, 512, 10}}).NumParams(); got != 784*512+512+512*512+512+512*10+10 {
		t.Errorf("NumParams = %d", got)
	}
}

// ComputeGradientsThen hands each layer over, from the output back, once
// its gradients are final: the bits are ComputeGradients', and what the
// caller sees at ready(l) is what the whole pass ends with.
func TestComputeGradientsThen(t *testing.T) {
	spec := Spec{Layers: []int{5, 7, 6, 3}, Activation: "relu", Loss: "cross_entropy"}
	n := newTestNetwork(t, spec, 3)
	b := randomBatch(rand.New(rand.NewPCG(3, 3)), spec, 8)
	n.ComputeGradients(b, 0.5)
	want := append([]float32(nil), n.Grads...)
	clear(n.Grads)
	var order []int
	seen := map[int][]float32{}
	n.ComputeGradientsThen(b, 0.5, func(l int) {
		order = append(order, l)
		seen[l] = append(append([]float32(nil), n.WeightGrad(l)...), n.BiasGrad(l)...)
	})
	if len(order) != 3 || order[0] != 2 || order[1] != 1 || order[2] != 0 {
		t.Fatalf("ready order %v, want [2 1 0]", order)
	}
	for i := range want {
		if n.Grads[i] != want[i] {
			t.Fatalf("Grads[%d] = %v, ComputeGradients gives %v", i, n.Grads[i], want[i])
		}
	}
	for l, got := range seen {
		final := append(append([]float32(nil), n.WeightGrad(l)...), n.BiasGrad(l)...)
		for i := range final {
			if got[i] != final[i] {
				t.Fatalf("layer %d at ready: value %d = %v, final %v", l, i, got[i], final[i])
			}
		}
	}
}
