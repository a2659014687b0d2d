package nn

import (
	"fmt"
	"math"
	"strconv"

	"gonum.org/v1/gonum/mat"

	"github.com/ringtrain/ringtrain/nn/internal/blas"
)

// LMConfig tunes Levenberg–Marquardt. Zero fields take the defaults shown.
type LMConfig struct {
	Mu        float64 // initial damping μ, default 1e-3
	MuUp      float64 // factor applied to μ after a rejected step, default 10
	MuDown    float64 // factor applied to μ after an accepted step, default 0.1
	MaxMu     float64 // Step fails with ErrDampingLimit once μ would exceed this, default 1e10
	MaxParams int     // largest network accepted, default 5000 (JᵀJ is MaxParams² float64s)
}

func (c LMConfig) withDefaults() LMConfig {
	if c.Mu == 0 {
		c.Mu = 1e-3
	}
	if c.MuUp == 0 {
		c.MuUp = 10
	}
	if c.MuDown == 0 {
		c.MuDown = 0.1
	}
	if c.MaxMu == 0 {
		c.MaxMu = 1e10
	}
	if c.MaxParams == 0 {
		c.MaxParams = 5000
	}
	return c
}

// Validate checks the ranges after defaults are applied.
func (c LMConfig) Validate() error {
	c = c.withDefaults()
	switch {
	case !(c.Mu > 0) || math.IsInf(c.Mu, 0):
		return configErr("lm mu", c.Mu, "is not a finite positive number", "use a small damping such as 1e-3 (0 means 1e-3)")
	case !(c.MuUp > 1) || math.IsInf(c.MuUp, 0):
		return configErr("lm mu_up", c.MuUp, "is not a finite number above 1", "use e.g. 10 (0 means 10)")
	case !(c.MuDown > 0 && c.MuDown < 1):
		return configErr("lm mu_down", c.MuDown, "is out of range", "use a factor in (0, 1), e.g. 0.1 (0 means 0.1)")
	case !(c.MaxMu > c.Mu):
		return configErr("lm max_mu", c.MaxMu, "is not above mu "+strconv.FormatFloat(c.Mu, 'g', -1, 64), "use a large bound such as 1e10 (0 means 1e10)")
	case c.MaxParams < 0:
		return configErr("lm max_params", c.MaxParams, "is negative", "use 0 for the default 5000")
	}
	return nil
}

// LevenbergMarquardt trains a small mse network with the damped Gauss–Newton
// update. With residuals e = t - y over every example and output and J = ∂y/∂w,
// one step solves
//
//	(JᵀJ + μI) Δ = Jᵀe
//
// and tries w + Δ: if the loss drops the step is kept and μ shrinks (towards
// Gauss–Newton), otherwise it is undone, μ grows (towards small gradient steps)
// and the solve is repeated with the same J. J is built by backpropagation, one
// backward pass per output unit over the whole batch.
type LevenbergMarquardt struct {
	net *Network
	cfg LMConfig
	mu  float64

	jac   *mat.Dense    // [N*out, P]
	jtj   *mat.SymDense // JᵀJ
	sys   *mat.SymDense // JᵀJ + μI
	rhs   *mat.VecDense // Jᵀe
	delta *mat.VecDense
	resid []float64
	saved []float32
	chol  mat.Cholesky
}

// NewLevenbergMarquardt returns a trainer that updates n.Params in place. n
// must use loss mse and have at most cfg.MaxParams parameters.
func NewLevenbergMarquardt(n *Network, cfg LMConfig) (*LevenbergMarquardt, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if n.r.loss != lossMSE {
		return nil, configErr("loss", n.Spec.Loss, "is not supported by Levenberg-Marquardt", "use loss mse, or a first-order optimizer")
	}
	p := len(n.Params)
	if p > cfg.MaxParams {
		return nil, configErr("lm network size", p, "exceeds max_params "+strconv.Itoa(cfg.MaxParams), "use a smaller network or a first-order optimizer; LM stores a P×P matrix")
	}
	return &LevenbergMarquardt{
		net:   n,
		cfg:   cfg,
		mu:    cfg.Mu,
		jtj:   mat.NewSymDense(p, nil),
		sys:   mat.NewSymDense(p, nil),
		rhs:   mat.NewVecDense(p, nil),
		delta: mat.NewVecDense(p, nil),
		saved: make([]float32, p),
	}, nil
}

// Mu is the current damping.
func (lm *LevenbergMarquardt) Mu() float64 { return lm.mu }

// Step performs one Levenberg–Marquardt iteration on the batch and returns the
// mean per-example loss (torch.nn.MSELoss) at the parameters it leaves: the
// new loss when a step was accepted. When no damping up to MaxMu lowers the
// loss, the parameters are unchanged and the error wraps ErrDampingLimit.
func (lm *LevenbergMarquardt) Step(b Batch) (loss float64, err error) {
	n := lm.net
	n.checkBatch("LevenbergMarquardt.Step", b)
	if b.N == 0 {
		panic(&ShapeError{Op: "LevenbergMarquardt.Step", Arg: "Batch.N", Got: 0, Want: 1, Rel: ">="})
	}
	n.forward(b.X, b.N)
	before := n.loss("LevenbergMarquardt.Step", b, nil, 0) / float64(b.N)
	lm.jacobian(b)

	p := len(n.Params)
	lm.jtj.SymOuterK(1, lm.jac.T())
	lm.rhs.MulVec(lm.jac.T(), vec(lm.resid))
	copy(lm.saved, n.Params)
	for {
		lm.sys.CopySym(lm.jtj)
		for i := range p {
			lm.sys.SetSym(i, i, lm.sys.At(i, i)+lm.mu)
		}
		if lm.chol.Factorize(lm.sys) {
			if err := lm.chol.SolveVecTo(lm.delta, lm.rhs); err == nil {
				for i := range n.Params {
					n.Params[i] = lm.saved[i] + float32(lm.delta.AtVec(i))
				}
				n.forward(b.X, b.N)
				after := n.loss("LevenbergMarquardt.Step", b, nil, 0) / float64(b.N)
				if after < before {
					lm.mu = max(lm.mu*lm.cfg.MuDown, 1e-300)
					return after, nil
				}
				copy(n.Params, lm.saved)
			}
		}
		if lm.mu*lm.cfg.MuUp > lm.cfg.MaxMu {
			copy(n.Params, lm.saved)
			return before, fmt.Errorf("nn: LevenbergMarquardt.Step: loss %g not reduced with damping up to %g: %w", before, lm.mu, ErrDampingLimit)
		}
		lm.mu *= lm.cfg.MuUp
	}
}

// jacobian fills lm.jac with ∂y/∂w and lm.resid with t - y after a forward
// pass over b. Row i*out+j belongs to output j of example i. For each output j
// it seeds Δ^L = ∂y_j/∂Z^L and backpropagates it through the layers as
// ComputeGradients does, but keeps the per-example products
// ∂y_ij/∂W^l_pq = Δ^l_ip A^{l-1}_iq instead of summing them over the batch.
func (lm *LevenbergMarquardt) jacobian(b Batch) {
	n := lm.net
	layers := n.NumLayers()
	last := layers - 1
	out := n.Spec.Layers[layers]
	rows := b.N * out
	p := len(n.Params)
	if lm.jac == nil || lm.jac.RawMatrix().Rows != rows {
		lm.jac = mat.NewDense(rows, p, nil)
		lm.resid = make([]float64, rows)
	}
	y := n.ws.a[last][:rows]
	for i, v := range y {
		lm.resid[i] = float64(b.Targets[i]) - float64(v)
	}
	jac := lm.jac.RawMatrix()
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

func vec(x []float64) *mat.VecDense { return mat.NewVecDense(len(x), x) }
