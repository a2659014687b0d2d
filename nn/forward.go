package nn

import "github.com/ringtrain/ringtrain/nn/internal/blas"

// Forward runs the network on batch examples stored row-major in x
// ([batch, in]) and returns the outputs [batch, out]: softmax probabilities for
// cross_entropy, sigmoid probabilities for bce, the output activation for mse.
// The returned slice belongs to the network and is valid until its next call
// of Forward, ComputeGradients or Evaluate. x is not retained.
func (n *Network) Forward(x []float32, batch int) []float32 {
	if batch < 0 {
		panic(&ShapeError{Op: "Forward", Arg: "batch", Got: batch, Want: 0, Rel: ">="})
	}
	if in := n.Spec.Layers[0]; len(x) != batch*in {
		panic(&ShapeError{Op: "Forward", Arg: "len(x)", Got: len(x), Want: batch * in})
	}
	if batch == 0 {
		return nil
	}
	n.forward(x, batch)
	return n.outputs(batch)
}

// forward fills z and a of every layer for rows examples of x:
//
//	Z^l = A^{l-1} (W^l)ᵀ + 1 (b^l)ᵀ,  A^l = f(Z^l)
//
// with one GEMM per layer. The bias is broadcast into Z first so the GEMM
// accumulates onto it (beta = 1).
func (n *Network) forward(x []float32, rows int) { n.forwardAt(x, 0, rows) }

// forwardAt is forward for the rows [off, off+rows) of the workspace, whose
// inputs are those rows of x.
func (n *Network) forwardAt(x []float32, off, rows int) {
	n.ensure(off + rows)
	layers := n.NumLayers()
	in := x[off*n.Spec.Layers[0] : (off+rows)*n.Spec.Layers[0]]
	for l := range layers {
		inW, outW := n.Spec.Layers[l], n.Spec.Layers[l+1]
		z := n.ws.z[l][off*outW : (off+rows)*outW]
		a := n.ws.a[l][off*outW : (off+rows)*outW]
		bias := n.Bias(l)
		for r := 0; r < len(z); r += outW {
			copy(z[r:r+outW], bias)
		}
		blas.Sgemm(false, true, rows, outW, inW, 1, in, inW, n.Weight(l), inW, 1, z, outW)
		f := n.r.hidden
		if l == layers-1 {
			f = n.r.output
		}
		f.forward(z, a, outW)
		in = a
	}
}

// outputs is what Forward returns after forward(_, rows).
func (n *Network) outputs(rows int) []float32 {
	last := n.NumLayers() - 1
	out := n.Spec.Layers[last+1]
	if n.r.loss == lossCrossEntropy {
		p := n.ws.probs[:rows*out]
		a := n.ws.a[last][:rows*out]
		for r := 0; r < len(a); r += out {
			softmaxRow(a[r:r+out], p[r:r+out])
		}
		return p
	}
	return n.ws.a[last][:rows*out]
}

// Evaluate runs the network forward over the batch in chunks of at most chunk
// rows (all at once when chunk <= 0) and returns the sum of the per-example
// losses and the number of examples predicted correctly: the argmax of the
// output equals the label for cross_entropy; every output thresholded at 0.5
// equals its target thresholded at 0.5 for bce; the argmax of the output
// equals the argmax of the target for mse. Parameters and Grads are not
// touched.
func (n *Network) Evaluate(b Batch, chunk int) (lossSum float64, correct int) {
	n.checkBatch("Evaluate", b)
	if chunk <= 0 || chunk > b.N {
		chunk = b.N
	}
	in, out := n.Spec.Layers[0], n.Spec.Layers[n.NumLayers()]
	for start := 0; start < b.N; start += chunk {
		rows := min(chunk, b.N-start)
		part := b.slice(start, rows, in, out)
		n.forward(part.X, rows)
		lossSum += n.loss("Evaluate", part, nil, 0)
		correct += n.countCorrect(part, n.outputs(rows))
	}
	return lossSum, correct
}

func (n *Network) countCorrect(b Batch, y []float32) int {
	out := n.Spec.Layers[n.NumLayers()]
	correct := 0
	for r := range b.N {
		row := y[r*out : (r+1)*out]
		switch n.r.loss {
		case lossCrossEntropy:
			if argmax(row) == int(b.Labels[r]) {
				correct++
			}
		case lossBCE:
			ok := true
			for j, p := range row {
				if (p >= 0.5) != (b.Targets[r*out+j] >= 0.5) {
					ok = false
					break
				}
			}
			if ok {
				correct++
			}
		case lossMSE:
			if argmax(row) == argmax(b.Targets[r*out:(r+1)*out]) {
				correct++
			}
		}
	}
	return correct
}

// argmax returns the index of the first largest element.
func argmax(x []float32) int {
	best := 0
	for j, v := range x {
		if v > x[best] {
			best = j
		}
	}
	return best
}
