package nn

import (
	"math"
	"strconv"

	"gonum.org/v1/gonum/blas/blas64"
	"gonum.org/v1/gonum/mat"

	"github.com/ringtrain/ringtrain/nn/internal/blas"
)

// LMSystem holds the building blocks of a Levenberg–Marquardt step for a
// caller that sums the Gauss–Newton system over several batches — the shards
// of a data-parallel step — and drives the damping itself:
//
//   - Bounds and Add compute, for one batch with residuals e = t - y over
//     its examples and outputs and J = ∂y/∂w, the loss sum, JᵀJ and Jᵀe;
//     Add adds them to the caller's buffers, Bounds only bounds their
//     entries (so that a caller can fix a scale before it adds anything);
//   - Solve solves (JᵀJ + μI) Δ = Jᵀe for a summed system.
//
// The trial step w + Δ and its loss (Network.Evaluate) are the caller's.
// LevenbergMarquardt.Step is these blocks on one batch.
//
// JᵀJ is symmetric and exchanged as its upper triangle, packed row by row:
// entry (i, j), i ≤ j, of a P×P matrix is at PackedIndex(P, i, j), and the
// whole triangle has PackedLen(P) entries.
//
// All sums are in float64 and are a pure function of the parameters and the
// batch: the same batch gives the same bits whichever LMSystem of an equal
// network computes it. Bounds and Add run the network forward, overwriting
// the slice its last Forward returned, as Evaluate does; they allocate
// nothing once the scratch has grown to the largest batch. An LMSystem is
// not safe for concurrent use, nor is its network.
type LMSystem struct {
	lmCore
}

// lmCore is the scratch shared by LMSystem and LevenbergMarquardt: one
// batch's Jacobian and residuals, and the solver's matrices.
type lmCore struct {
	net    *Network
	jac    *mat.Dense // [N*out, P], a view of jacBuf
	jacBuf []float64
	resid  []float64 // t - y, [N*out]
	diag   []float64 // Bounds' diagonal of JᵀJ, [P]
	sys    *mat.SymDense
	rhs    *mat.VecDense // Jᵀe: a view of the caller's vector (Solve) or LevenbergMarquardt.jte
	delta  *mat.VecDense // Δ: a view of the caller's vector (Solve) or owned
	chol   mat.Cholesky
}

// NewLMSystem returns the building blocks for n, which must use loss mse
// and have at most maxParams parameters (0 means the LMConfig default,
// 5000): JᵀJ holds P² float64s.
func NewLMSystem(n *Network, maxParams int) (*LMSystem, error) {
	c, err := newLMCore(n, maxParams)
	if err != nil {
		return nil, err
	}
	return &LMSystem{lmCore: c}, nil
}

func newLMCore(n *Network, maxParams int) (lmCore, error) {
	if maxParams == 0 {
		maxParams = LMConfig{}.withDefaults().MaxParams
	}
	if n.r.loss != lossMSE {
		return lmCore{}, configErr("loss", n.Spec.Loss, "is not supported by Levenberg-Marquardt", "use loss mse, or a first-order optimizer")
	}
	p := len(n.Params)
	if p > maxParams {
		return lmCore{}, configErr("lm network size", p, "exceeds max_params "+strconv.Itoa(maxParams), "use a smaller network or a first-order optimizer; LM stores a P×P matrix")
	}
	return lmCore{
		net:   n,
		sys:   mat.NewSymDense(p, nil),
		rhs:   mat.NewVecDense(p, nil),
		delta: mat.NewVecDense(p, nil),
	}, nil
}

// PackedLen is the number of entries of the packed upper triangle of a
// p×p symmetric matrix, p(p+1)/2.
func PackedLen(p int) int { return p * (p + 1) / 2 }

// PackedIndex is where entry (i, j), 0 ≤ i ≤ j < p, of a p×p symmetric
// matrix lives in its packed upper triangle: row i's entries (i, i..p-1)
// follow rows 0..i-1.
func PackedIndex(p, i, j int) int { return i*(2*p-i+1)/2 + j - i }

// Bounds runs the network forward over b and returns the batch's loss sum
// (Σ over examples of the mean over outputs of e², as ComputeGradients)
// and upper bounds on the magnitude of every entry that Add(b, …) would add
// to JᵀJ and to Jᵀe, float64 rounding included. They follow from the
// diagonal of JᵀJ by Cauchy–Schwarz: |(JᵀJ)_pq| ≤ max_p (JᵀJ)_pp and
// |(Jᵀe)_p| ≤ √((JᵀJ)_pp · eᵀe), doubled. NaN or +Inf when a value is not
// finite.
func (s *LMSystem) Bounds(b Batch) (jtj, jte, lossSum float64) {
	s.net.checkBatch("LMSystem.Bounds", b)
	if b.N == 0 {
		return 0, 0, 0
	}
	lossSum = s.prepare("LMSystem.Bounds", b)
	rows, p := len(s.resid), len(s.net.Params)
	raw := s.jac.RawMatrix()
	if len(s.diag) != p {
		s.diag = make([]float64, p)
	}
	diag := s.diag
	clear(diag)
	for r := range rows {
		for q, v := range raw.Data[r*raw.Stride:][:p] {
			diag[q] += v * v
		}
	}
	var d, ee float64
	for _, v := range diag {
		if v > d || v != v {
			d = v
		}
	}
	for _, v := range s.resid {
		ee += v * v
	}
	return 2 * d, 2 * math.Sqrt(d*ee), lossSum
}

// Add runs the network forward over b and adds the batch's JᵀJ (packed
// upper triangle, len PackedLen(P)) to jtj and its Jᵀe (len P) to jte,
// where P = len(Params). It returns the batch's loss sum. An empty batch
// adds nothing.
func (s *LMSystem) Add(b Batch, jtj, jte []float64) (lossSum float64) {
	s.net.checkBatch("LMSystem.Add", b)
	s.checkSystem("LMSystem.Add", jtj, jte)
	if b.N == 0 {
		return 0
	}
	lossSum = s.prepare("LMSystem.Add", b)
	s.addSystem(jtj, jte)
	return lossSum
}

// Solve writes to delta (len P) the solution of (JᵀJ + μI) Δ = Jᵀe for the
// packed upper triangle jtj and the vector jte, by a Cholesky factorisation
// (gonum, deterministic). It reports false, leaving delta unspecified, when
// the damped matrix is not numerically positive definite; a larger μ then
// helps. jtj and jte are only read.
func (s *LMSystem) Solve(jtj, jte []float64, mu float64, delta []float64) bool {
	s.checkSystem("LMSystem.Solve", jtj, jte)
	if len(delta) != len(jte) {
		panic(&ShapeError{Op: "LMSystem.Solve", Arg: "len(delta)", Got: len(delta), Want: len(jte)})
	}
	s.rhs.SetRawVector(blas64.Vector{N: len(jte), Inc: 1, Data: jte})
	s.delta.SetRawVector(blas64.Vector{N: len(delta), Inc: 1, Data: delta})
	return s.solve(jtj, s.rhs, mu, s.delta)
}

func (s *lmCore) checkSystem(op string, jtj, jte []float64) {
	p := len(s.net.Params)
	if len(jtj) != PackedLen(p) {
		panic(&ShapeError{Op: op, Arg: "len(jtj)", Got: len(jtj), Want: PackedLen(p)})
	}
	if len(jte) != p {
		panic(&ShapeError{Op: op, Arg: "len(jte)", Got: len(jte), Want: p})
	}
}

// prepare runs b forward, fills the Jacobian and the residuals and returns
// the loss sum. b is checked and not empty.
func (s *lmCore) prepare(op string, b Batch) float64 {
	s.net.forward(b.X, b.N)
	lossSum := s.net.loss(op, b, nil, 0)
	s.jacobian(b)
	return lossSum
}

// addSystem adds JᵀJ (packed upper triangle) and Jᵀe of the prepared batch:
// one rank-1 update per row of J, in row order.
func (s *lmCore) addSystem(jtj, jte []float64) {
	p := len(s.net.Params)
	raw := s.jac.RawMatrix()
	for r, e := range s.resid {
		row := raw.Data[r*raw.Stride:][:p]
		for i, a := range row {
			if a == 0 {
				continue // ReLU-like units leave many zeros; skipping adds 0 exactly
			}
			jte[i] += a * e
			dst := jtj[PackedIndex(p, i, i):][:p-i]
			for k, v := range row[i:] {
				dst[k] += a * v
			}
		}
	}
}

// solve is Solve with the right-hand side and the solution as vectors.
func (s *lmCore) solve(jtj []float64, rhs *mat.VecDense, mu float64, delta *mat.VecDense) bool {
	p := len(s.net.Params)
	raw := s.sys.RawSymmetric()
	for i := range p {
		copy(raw.Data[i*raw.Stride+i:][:p-i], jtj[PackedIndex(p, i, i):][:p-i])
		raw.Data[i*raw.Stride+i] += mu
	}
	if !s.chol.Factorize(s.sys) {
		return false
	}
	return s.chol.SolveVecTo(delta, rhs) == nil
}

// jacobian fills jac with ∂y/∂w and resid with t - y after a forward pass
// over b. Row i*out+j belongs to output j of example i. For each output j
// it seeds Δ^L = ∂y_j/∂Z^L and backpropagates it through the layers as
// ComputeGradients does, but keeps the per-example products
// ∂y_ij/∂W^l_pq = Δ^l_ip A^{l-1}_iq instead of summing them over the batch.
func (s *lmCore) jacobian(b Batch) {
	n := s.net
	layers := n.NumLayers()
	last := layers - 1
	out := n.Spec.Layers[layers]
	rows := b.N * out
	p := len(n.Params)
	if cap(s.resid) < rows { // grown to the largest batch seen, then reused
		s.jacBuf, s.resid = make([]float64, rows*p), make([]float64, rows)
	}
	if s.jac == nil {
		s.jac = &mat.Dense{}
	}
	s.jac.SetRawMatrix(blas64.General{Rows: rows, Cols: p, Stride: p, Data: s.jacBuf[:rows*p]})
	s.resid = s.resid[:rows]
	y := n.ws.a[last][:rows]
	for i, v := range y {
		s.resid[i] = float64(b.Targets[i]) - float64(v)
	}
	jac := s.jac.RawMatrix()
	for j := range out {
		d := n.ws.d[last][:rows]
		clear(d)
		for i := range b.N {
			d[i*out+j] = 1
		}
		n.r.output.backward(d, n.ws.z[last][:rows], y, out)
		for l := last; l >= 0; l-- {
			inW, outW := n.Spec.Layers[l], n.Spec.Layers[l+1]
			dl := n.ws.d[l][:b.N*outW]
			prev := b.X
			if l > 0 {
				prev = n.ws.a[l-1][:b.N*inW]
			}
			wOff := n.offsets[l]
			bOff := wOff + outW*inW
			for i := range b.N {
				row := jac.Data[(i*out+j)*jac.Stride:][:p]
				a := prev[i*inW : (i+1)*inW]
				for q, dv := range dl[i*outW : (i+1)*outW] {
					w := row[wOff+q*inW : wOff+(q+1)*inW]
					for k, av := range a {
						w[k] = float64(dv) * float64(av)
					}
					row[bOff+q] = float64(dv)
				}
			}
			if l == 0 {
				break
			}
			dPrev := n.ws.d[l-1][:b.N*inW]
			blas.Sgemm(false, false, b.N, inW, outW, 1, dl, outW, n.Weight(l), inW, 0, dPrev, inW)
			n.r.hidden.backward(dPrev, n.ws.z[l-1][:b.N*inW], prev, inW)
		}
	}
}
