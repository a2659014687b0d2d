package nn

import (
	"testing"

	"go.uber.org/goleak"
)

// nn starts no goroutines of its own; the pure-Go GEMM's parallel path must
// have joined its workers before returning.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestShapeErrorMessages(t *testing.T) {
	n, err := NewNetwork(Spec{Layers: []int{3, 2}, Loss: "cross_entropy"})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		f    func()
		want string
	}{
		{func() { n.Forward(make([]float32, 5), 2) }, "nn: Forward: len(x) = 5, want 6"},
		{func() { n.Bias(1) }, "nn: Bias: layer = 1, want < 1"},
		{func() { n.WeightGrad(-1) }, "nn: WeightGrad: layer = -1, want >= 0"},
		{func() {
			n.ComputeGradients(Batch{X: make([]float32, 3), Labels: []int32{-1}, N: 1}, 1)
		}, "nn: ComputeGradients: label -1 at row 0 out of range; labels must be in [0, 2)"},
	} {
		func() {
			defer func() {
				r := recover()
				e, ok := r.(error)
				if !ok || e.Error() != c.want {
					t.Errorf("panic %v, want %q", r, c.want)
				}
			}()
			c.f()
		}()
	}
}
