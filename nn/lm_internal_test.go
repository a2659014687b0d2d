package nn

import (
	"math/rand/v2"
	"testing"
)

// TestJacobianMatchesGradient checks the Jacobian against backprop: for mse,
// ∂/∂w Σ_i mean_j (y_ij - t_ij)² = -(2/out) Jᵀ(t - y).
func TestJacobianMatchesGradient(t *testing.T) {
	for i, act := range []string{"tanh", "softmax", "gelu"} {
		for _, output := range []string{"identity", "logistic", "softmax"} {
			spec := Spec{Layers: []int{3, 5, 4, 3}, Activation: act, Output: output, Loss: "mse"}
			n := newTestNetwork(t, spec, uint64(70+i))
			b := randomBatch(rand.New(rand.NewPCG(7, uint64(i))), spec, 5)
			n.ComputeGradients(b, 1)
			lm, err := NewLevenbergMarquardt(n, LMConfig{})
			if err != nil {
				t.Fatal(err)
			}
			n.forward(b.X, b.N)
			lm.jacobian(b)
			lm.rhs.MulVec(lm.jac.T(), vec(lm.resid))
			for j, g := range n.Grads {
				approx(t, act+"/"+output+" -(2/out)Jᵀe", -2.0/3*lm.rhs.AtVec(j), float64(g), 1e-5)
			}
		}
	}
}
