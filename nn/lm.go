package nn

import (
	"fmt"
	"math"
	"strconv"

	"gonum.org/v1/gonum/mat"
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
// backward pass per output unit over the whole batch. Step is LMSystem's
// building blocks (Add, Solve) on one batch; a data-parallel trainer sums
// the system over shards with an LMSystem and drives the damping itself.
type LevenbergMarquardt struct {
	lmCore
	cfg LMConfig
	mu  float64

	jtj   []float64 // JᵀJ, packed upper triangle
	jte   []float64 // Jᵀe, the data of lmCore.rhs
	saved []float32
}

// NewLevenbergMarquardt returns a trainer that updates n.Params in place. n
// must use loss mse and have at most cfg.MaxParams parameters.
func NewLevenbergMarquardt(n *Network, cfg LMConfig) (*LevenbergMarquardt, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	core, err := newLMCore(n, cfg.MaxParams)
	if err != nil {
		return nil, err
	}
	p := len(n.Params)
	lm := &LevenbergMarquardt{
		lmCore: core,
		cfg:    cfg,
		mu:     cfg.Mu,
		jtj:    make([]float64, PackedLen(p)),
		saved:  make([]float32, p),
	}
	lm.jte = lm.rhs.RawVector().Data // the right-hand side, as a slice for Add
	return lm, nil
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
	clear(lm.jtj)
	clear(lm.jte)
	before := lm.prepare("LevenbergMarquardt.Step", b) / float64(b.N)
	lm.addSystem(lm.jtj, lm.jte)
	copy(lm.saved, n.Params)
	for {
		if lm.solve(lm.jtj, lm.rhs, lm.mu, lm.delta) {
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
		if lm.mu*lm.cfg.MuUp > lm.cfg.MaxMu {
			copy(n.Params, lm.saved)
			return before, fmt.Errorf("nn: LevenbergMarquardt.Step: loss %g not reduced with damping up to %g: %w", before, lm.mu, ErrDampingLimit)
		}
		lm.mu *= lm.cfg.MuUp
	}
}

func vec(x []float64) *mat.VecDense { return mat.NewVecDense(len(x), x) }
