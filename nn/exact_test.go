package nn

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/ringtrain/ringtrain/internal/testenv"
)

// TestBackwardMicroMatchesPerMicroShard: exact training's one pass over a
// rank's micro-shards gives each micro-shard what ComputeGradients over it
// alone gives — the loss sum and the bounds always, the integers of the
// bias gradients always, those of the weight gradients bit for bit with the
// pure-Go GEMM (whose rows are independent) and within float32 rounding of
// another GEMM's micro-shard gradient.
func TestBackwardMicroMatchesPerMicroShard(t *testing.T) {
	testenv.Need(t, FixedKernel() != "", "the fixed-point kernel (AVX-512F and DQ); without it exact training takes the classic way, tested in train")
	for _, c := range []struct {
		spec        Spec
		rows, micro int
	}{
		{Spec{Layers: []int{784, 512, 512, 10}, Activation: "relu", Loss: "cross_entropy"}, 53, 16},
		{Spec{Layers: []int{7, 33, 5}, Activation: "tanh", Loss: "mse"}, 40, 8},
		{Spec{Layers: []int{9, 6, 3}, Activation: "gelu", Loss: "bce"}, 5, 16},
	} {
		rng := rand.New(rand.NewPCG(5, 6))
		n, err := NewNetwork(c.spec)
		if err != nil {
			t.Fatal(err)
		}
		if err := n.Init("he", rng); err != nil {
			t.Fatal(err)
		}
		in, out := c.spec.Layers[0], c.spec.Layers[len(c.spec.Layers)-1]
		b := Batch{X: make([]float32, c.rows*in), N: c.rows}
		for i := range b.X {
			b.X[i] = rng.Float32()
		}
		if c.spec.Loss == "cross_entropy" {
			b.Labels = make([]int32, c.rows)
			for i := range b.Labels {
				b.Labels[i] = int32(rng.IntN(out))
			}
		} else {
			b.Targets = make([]float32, c.rows*out)
			for i := range b.Targets {
				b.Targets[i] = rng.Float32()
			}
		}
		const scale = 1.0 / 256
		L := n.NumLayers()
		nm := (c.rows + c.micro - 1) / c.micro

		// Per micro-shard, the classic way.
		ref := n.Clone()
		wantLoss := make([]float64, nm)
		wantBounds := make([]float64, nm*2*L)
		grads := make([][]float32, nm)
		for m := range nm {
			r0, r1 := m*c.micro, min((m+1)*c.micro, c.rows)
			part := b.slice(r0, r1-r0, in, out)
			wantLoss[m] = ref.ComputeGradients(part, scale)
			ref.GradientBounds(part, wantBounds[m*2*L:(m+1)*2*L])
			grads[m] = append([]float32(nil), ref.Grads...)
		}

		losses := make([]float64, nm)
		bounds := make([]float64, nm*2*L)
		n.BackwardMicro(b, c.micro, scale, losses, bounds)
		for m := range nm {
			if losses[m] != wantLoss[m] {
				t.Fatalf("%v: micro-shard %d loss %v, alone %v", c.spec.Layers, m, losses[m], wantLoss[m])
			}
		}
		for i := range bounds {
			if bounds[i] != wantBounds[i] {
				t.Fatalf("%v: bound %d = %v, alone %v", c.spec.Layers, i, bounds[i], wantBounds[i])
			}
		}
		exact := rowsIndependent()
		for l := range L {
			wOff := n.offsets[l]
			inW, outW := c.spec.Layers[l], c.spec.Layers[l+1]
			for _, part := range []struct {
				off, len, shift int
				bias            bool
			}{{wOff, inW * outW, 40, false}, {wOff + inW*outW, outW, 44, true}} {
				acc := make([]int64, part.len)
				if part.bias {
					n.FixedBiasGrad(l, part.shift, acc)
				} else {
					n.FixedWeightGrad(b, l, part.shift, acc)
				}
				want := make([]int64, part.len)
				var largest float64
				for i := range want {
					for m := range nm {
						v := float64(grads[m][part.off+i])
						want[i] += int64(math.RoundToEven(math.Ldexp(v, part.shift)))
					}
					largest = max(largest, math.Abs(float64(want[i])))
				}
				for i := range acc {
					if acc[i] == want[i] {
						continue
					}
					if exact || part.bias {
						t.Fatalf("%v layer %d bias=%v [%d]: %d, per micro-shard %d", c.spec.Layers, l, part.bias, i, acc[i], want[i])
					}
					// Another GEMM sums in another order: differences of
					// float32 rounding, far below the layer's largest.
					if tol := largest * 0x1p-16; math.Abs(float64(acc[i]-want[i])) > tol {
						t.Fatalf("%v layer %d [%d]: %d, per micro-shard %d (beyond float32 rounding)", c.spec.Layers, l, i, acc[i], want[i])
					}
				}
			}
		}
	}
}
