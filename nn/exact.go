package nn

import (
	"fmt"
	"math"

	"github.com/ringtrain/ringtrain/nn/internal/blas"
	"github.com/ringtrain/ringtrain/nn/internal/fixed"
)

// Exact training's backward pass.
//
// A rank of an exact run computes several micro-shards of a global batch,
// and each micro-shard's gradient must have the bits it would have alone;
// the rank then sums them, and the ranks their sums, as integers in fixed
// point. BackwardMicro and FixedWeightGrad/FixedBiasGrad do that without a
// float32 gradient per micro-shard: forward and the deltas run over all the
// rank's rows at once where the GEMM's rows do not depend on one another
// (the pure-Go kernels guarantee that: each element of C is one chain of
// fused multiply-adds over k), else micro-shard by micro-shard; the weight
// gradient of every micro-shard goes from registers straight to integers
// (package fixed). The integers are those of ComputeGradients per
// micro-shard followed by the conversion, bit for bit, with the pure-Go
// GEMM.

// FixedKernel names the kernel of FixedWeightGrad on this CPU ("avx512"),
// or "" where there is none: then exact training computes a float32
// gradient per micro-shard (ComputeGradients) and converts it.
// RINGTRAIN_FIXED_KERNEL=off selects that way everywhere.
func FixedKernel() string { return fixed.Kernel() }

// FixedKernelError reports a RINGTRAIN_FIXED_KERNEL value this process cannot
// honour as one line naming the variable, the value and the valid values.
func FixedKernelError() error { return fixed.KernelEnvError() }

// rowsIndependent: the GEMM computes each row of C from the same row of A
// alone, in an order that does not depend on the other rows, so a batch of
// micro-shards gives every micro-shard the bits it has alone.
func rowsIndependent() bool { return blas.Backend == "go" && blas.Kernel() != "generic" }

// BackwardMicro runs forward and backward over b, a rank's micro-shards of
// micro rows each in order (the last may be shorter), and stops short of the
// parameter gradients: for micro-shard m it sets losses[m] to its loss sum
// (as ComputeGradients over it alone would return, with the same scale)
// and bounds[m·2L : (m+1)·2L] to the bounds GradientBounds gives for it
// alone (L = NumLayers()). FixedWeightGrad and FixedBiasGrad then give the
// gradients; no other pass of n may come between.
func (n *Network) BackwardMicro(b Batch, micro int, scale float32, losses, bounds []float64) {
	n.checkBatch("BackwardMicro", b)
	if micro < 1 {
		panic(&ShapeError{Op: "BackwardMicro", Arg: "micro", Got: micro, Want: 1, Rel: ">="})
	}
	nm := (b.N + micro - 1) / micro
	L := n.NumLayers()
	if len(losses) < nm || len(bounds) < nm*2*L {
		panic(fmt.Sprintf("nn: BackwardMicro: %d micro-shards need %d losses and %d bounds, have %d and %d", nm, nm, nm*2*L, len(losses), len(bounds)))
	}
	n.ws.micro = n.ws.micro[:0]
	for r := 0; r < b.N; r += micro {
		n.ws.micro = append(n.ws.micro, int32(min(micro, b.N-r)))
	}
	if b.N == 0 {
		return
	}
	n.ensure(b.N)
	whole := rowsIndependent()
	if whole {
		n.forwardAt(b.X, 0, b.N)
	}
	in, out := n.Spec.Layers[0], n.Spec.Layers[L]
	off := 0
	for m, rows := range n.ws.micro {
		r := int(rows)
		if !whole {
			n.forwardAt(b.X, off, r)
		}
		part := b.slice(off, r, in, out)
		losses[m] = n.lossAt("BackwardMicro", part, off, n.ws.d[L-1][off*out:(off+r)*out], scale)
		if !whole {
			n.deltasAt(off, r)
		}
		off += r
	}
	if whole {
		n.deltasAt(0, b.N)
	}
	off = 0
	for m, rows := range n.ws.micro {
		n.gradientBoundsAt(b.X, off, int(rows), bounds[m*2*L:(m+1)*2*L])
		off += int(rows)
	}
}

// deltasAt propagates Δ^L back to Δ^1 for the rows [off, off+rows) of the
// workspace, as backward does.
func (n *Network) deltasAt(off, rows int) {
	for l := n.NumLayers() - 1; l > 0; l-- {
		n.deltaAt(l, off, rows)
	}
}

// FixedWeightGrad sets acc (len = the layer's weights, in WeightGrad's
// order) to Σ_m round(∂W^l_m · 2^shift) over the micro-shards m of the last
// BackwardMicro over b, ∂W^l_m being the float32 weight gradient that
// ComputeGradients over micro-shard m alone computes (with the pure-Go
// GEMM: the same bits), rounded to nearest, ties to even. Every
// |∂W^l_m · 2^shift| must be below 2^51 and the sum below 2^63. It needs
// FixedKernel() != "".
func (n *Network) FixedWeightGrad(b Batch, l, shift int, acc []int64) {
	inW, outW := n.Spec.Layers[l], n.Spec.Layers[l+1]
	fixed.WeightGrad(acc[:outW*inW], n.ws.d[l], outW, n.input(b.X, l), inW, n.ws.micro, shift, &n.ws.fixed)
}

// FixedWeightGradFloat is FixedWeightGrad followed by the conversion back to
// float32 (out[i] = float32(acc[i] · 2^−shift), one rounding), for a sum
// that needs no other process's: the integers never reach memory.
func (n *Network) FixedWeightGradFloat(b Batch, l, shift int, out []float32) {
	inW, outW := n.Spec.Layers[l], n.Spec.Layers[l+1]
	fixed.WeightGradFloat(out[:outW*inW], n.ws.d[l], outW, n.input(b.X, l), inW, n.ws.micro, shift, &n.ws.fixed)
}

// FixedBiasGrad is FixedWeightGrad for layer l's bias gradient: each
// micro-shard's column sums of Δ^l, in order of the rows, as
// ComputeGradients computes them.
func (n *Network) FixedBiasGrad(l, shift int, acc []int64) {
	outW := n.Spec.Layers[l+1]
	acc = acc[:outW]
	clear(acc)
	if cap(n.ws.colSums) < outW {
		n.ws.colSums = make([]float32, outW)
	}
	sum := n.ws.colSums[:outW]
	scale := math.Ldexp(1, shift)
	off := 0
	for _, rows := range n.ws.micro {
		r := int(rows)
		if r == 0 {
			continue
		}
		columnSums(n.ws.d[l][off*outW:(off+r)*outW], outW, sum)
		for o, v := range sum {
			acc[o] += int64(math.RoundToEven(float64(v) * scale))
		}
		off += r
	}
}
