package nn

import (
	"github.com/ringtrain/ringtrain/nn/internal/blas"
	"github.com/ringtrain/ringtrain/nn/internal/fixed"
)

// Batch is a set of examples stored row-major.
type Batch struct {
	X       []float32 // inputs [N, in]
	Labels  []int32   // class indices [N], for cross_entropy
	Targets []float32 // targets [N, out], for mse and bce
	N       int       // number of examples
}

// slice returns rows [start, start+rows) of b.
func (b Batch) slice(start, rows, in, out int) Batch {
	s := Batch{X: b.X[start*in : (start+rows)*in], N: rows}
	if b.Labels != nil {
		s.Labels = b.Labels[start : start+rows]
	}
	if b.Targets != nil {
		s.Targets = b.Targets[start*out : (start+rows)*out]
	}
	return s
}

func (n *Network) checkBatch(op string, b Batch) {
	in, out := n.Spec.Layers[0], n.Spec.Layers[n.NumLayers()]
	if b.N < 0 {
		panic(&ShapeError{Op: op, Arg: "Batch.N", Got: b.N, Want: 0, Rel: ">="})
	}
	if len(b.X) != b.N*in {
		panic(&ShapeError{Op: op, Arg: "len(Batch.X)", Got: len(b.X), Want: b.N * in})
	}
	if n.r.loss == lossCrossEntropy {
		if len(b.Labels) != b.N {
			panic(&ShapeError{Op: op, Arg: "len(Batch.Labels)", Got: len(b.Labels), Want: b.N})
		}
	} else if len(b.Targets) != b.N*out {
		panic(&ShapeError{Op: op, Arg: "len(Batch.Targets)", Got: len(b.Targets), Want: b.N * out})
	}
}

// ComputeGradients runs the batch forward and backward and overwrites Grads
// with scale * ∂(Σ per-example loss)/∂Params. It returns the sum (not the mean)
// of the per-example losses in float64:
//
//   - cross_entropy: -log softmax(logits)[label];
//   - bce: the mean over outputs of -t log σ(z) - (1-t) log(1-σ(z)), as
//     torch.nn.BCEWithLogitsLoss;
//   - mse: the mean over outputs of (y-t)², as torch.nn.MSELoss.
//
// So lossSum/N is the PyTorch loss with reduction "mean" and scale = 1/N gives
// its gradient. A data-parallel worker holding a shard of a global batch of B
// examples passes scale = 1/B: the sum of the workers' Grads is then the
// gradient of the global mean.
//
// Backward follows the matrix form of backpropagation with examples as rows:
// Δ^L comes from the loss and the output activation, then for each layer from
// the output
//
//	∂W^l = (Δ^l)ᵀ A^{l-1}   (one GEMM, summed over the batch)
//	∂b^l = column sums of Δ^l
//	Δ^{l-1} = (Δ^l W^l) ∘ f'(Z^{l-1})   (a Jacobian-vector product for softmax)
//
// which is the transpose of δ^{l-1} = (W^l)ᵀ δ^l ∘ f'(z^{l-1}) per example.
// scale is applied once, to Δ^L.
func (n *Network) ComputeGradients(b Batch, scale float32) (lossSum float64) {
	n.checkBatch("ComputeGradients", b)
	if b.N == 0 {
		clear(n.Grads)
		return 0
	}
	n.forward(b.X, b.N)
	last := n.NumLayers() - 1
	out := n.Spec.Layers[last+1]
	lossSum = n.loss("ComputeGradients", b, n.ws.d[last][:b.N*out], scale)
	n.backward(b.X, b.N, nil)
	return lossSum
}

// ComputeGradientsThen is ComputeGradients that calls ready(l) as soon as
// layer l's weight and bias gradients are final — from the last layer to the
// first, each after its GEMM — so that a caller can start reducing them
// while backward goes on (a data-parallel trainer's bucketed all-reduce).
// ready must not touch n; it runs on the calling goroutine. The gradients
// are the same bits as ComputeGradients'.
func (n *Network) ComputeGradientsThen(b Batch, scale float32, ready func(layer int)) (lossSum float64) {
	n.checkBatch("ComputeGradients", b)
	if b.N == 0 {
		clear(n.Grads)
		for l := n.NumLayers() - 1; l >= 0; l-- {
			ready(l)
		}
		return 0
	}
	n.forward(b.X, b.N)
	last := n.NumLayers() - 1
	out := n.Spec.Layers[last+1]
	lossSum = n.loss("ComputeGradients", b, n.ws.d[last][:b.N*out], scale)
	n.backward(b.X, b.N, ready)
	return lossSum
}

// loss computes the summed loss of the last forward over b and, when delta is
// non-nil, sets delta = scale*∂loss/∂Z^L.
func (n *Network) loss(op string, b Batch, delta []float32, scale float32) float64 {
	return n.lossAt(op, b, 0, delta, scale)
}

// lossAt is loss for the b.N rows of the workspace from off.
func (n *Network) lossAt(op string, b Batch, off int, delta []float32, scale float32) float64 {
	last := n.NumLayers() - 1
	out := n.Spec.Layers[last+1]
	size := b.N * out
	z, a := n.ws.z[last][off*out:off*out+size], n.ws.a[last][off*out:off*out+size]
	var sum float64
	switch n.r.loss {
	case lossCrossEntropy:
		sum = crossEntropy(op, a, b.Labels, out, n.ws.probs[off*out:off*out+size], delta, scale)
	case lossBCE:
		return binaryCrossEntropy(z, b.Targets, a, out, delta, scale)
	case lossMSE:
		sum = meanSquaredError(a, b.Targets, out, delta, scale)
	}
	if delta != nil {
		n.r.output.backward(delta, z, a, out)
	}
	return sum
}

// backward turns Δ^L in ws.d[last] into Grads, given the input x of the last
// forward over rows examples; ready, if not nil, is told each layer whose
// gradients are final.
func (n *Network) backward(x []float32, rows int, ready func(layer int)) {
	for l := n.NumLayers() - 1; l >= 0; l-- {
		inW, outW := n.Spec.Layers[l], n.Spec.Layers[l+1]
		d := n.ws.d[l][:rows*outW]
		blas.Sgemm(true, false, outW, inW, rows, 1, d, outW, n.input(x, l)[:rows*inW], inW, 0, n.WeightGrad(l), inW)
		columnSums(d, outW, n.BiasGrad(l))
		if ready != nil {
			ready(l)
		}
		if l > 0 {
			n.deltaAt(l, 0, rows)
		}
	}
}

// input is layer l's input in the workspace: x, the batch's, for the first
// layer, else the previous layer's activations.
func (n *Network) input(x []float32, l int) []float32 {
	if l == 0 {
		return x
	}
	return n.ws.a[l-1]
}

// deltaAt propagates layer l's deltas one layer back for the rows
// [off, off+rows) of the workspace: Δ^{l-1} = (Δ^l W^l) ∘ f'(Z^{l-1}), l ≥ 1.
func (n *Network) deltaAt(l, off, rows int) {
	inW, outW := n.Spec.Layers[l], n.Spec.Layers[l+1]
	d := n.ws.d[l][off*outW : (off+rows)*outW]
	dPrev := n.ws.d[l-1][off*inW : (off+rows)*inW]
	blas.Sgemm(false, false, rows, inW, outW, 1, d, outW, n.Weight(l), inW, 0, dPrev, inW)
	n.r.hidden.backward(dPrev, n.ws.z[l-1][off*inW:(off+rows)*inW], n.ws.a[l-1][off*inW:(off+rows)*inW], inW)
}

// GradientBounds writes, after ComputeGradients(b, scale) and before any
// other pass of n, an upper bound on the magnitude of every gradient value
// of each layer: dst[2l] bounds layer l's weight gradient, dst[2l+1] its bias
// gradient (len(dst) = 2·NumLayers()). With N rows, |∂W^l[o,i]| =
// |Σ_r Δ^l[r,o]·A^{l-1}[r,i]| ≤ N·max|Δ^l|·max|A^{l-1}| and |∂b^l[o]| ≤
// N·max|Δ^l|; the bounds are twice that, to cover float32 rounding in the
// sums (N < 2^22). A NaN or infinity anywhere makes its bound NaN or +Inf.
// It reads only the batch's activations and deltas, far fewer values than
// the gradient.
func (n *Network) GradientBounds(b Batch, dst []float64) { n.gradientBoundsAt(b.X, 0, b.N, dst) }

// gradientBoundsAt is GradientBounds for the rows [off, off+rows) of the
// workspace, whose inputs are those rows of x.
func (n *Network) gradientBoundsAt(x []float32, off, rows int, dst []float64) {
	for l := 0; l < n.NumLayers(); l++ {
		inW, outW := n.Spec.Layers[l], n.Spec.Layers[l+1]
		d := fixed.MaxAbs(n.ws.d[l][off*outW : (off+rows)*outW])
		dst[2*l] = 2 * float64(rows) * d * fixed.MaxAbs(n.input(x, l)[off*inW:(off+rows)*inW])
		dst[2*l+1] = 2 * float64(rows) * d
	}
}

// columnSums sets sum[j] = Σ_r d[r*cols+j].
func columnSums(d []float32, cols int, sum []float32) {
	sum = sum[:cols]
	copy(sum, d[:cols])
	for r := cols; r < len(d); r += cols {
		row := d[r : r+cols]
		for j, v := range row {
			sum[j] += v
		}
	}
}
