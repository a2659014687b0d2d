package nn

import (
	"fmt"
	"math"
)

// OptimizerConfig selects and tunes a first-order optimizer. The semantics are
// PyTorch's torch.optim.SGD (dampening 0), Adam and AdamW (amsgrad off).
type OptimizerConfig struct {
	// Name is sgd, momentum, nesterov, adam or adamw.
	Name string
	// Momentum μ for momentum and nesterov, in (0, 1): v = μv + g, then
	// p -= lr*v (momentum) or p -= lr*(g + μv) (nesterov). Must be 0 for sgd.
	Momentum float64
	// Beta1 and Beta2 are Adam's decay rates in [0, 1); zero means 0.9 and 0.999.
	Beta1, Beta2 float64
	// Eps is Adam's denominator term; zero means 1e-8.
	Eps float64
	// WeightDecay λ >= 0. For sgd, momentum, nesterov and adam it is L2 added
	// to the gradient (g += λp); for adamw it is decoupled (p -= lr*λ*p).
	WeightDecay float64
}

// NamedBuffer is one piece of optimizer state, for checkpoints.
type NamedBuffer struct {
	Name string
	Data []float32
}

// Optimizer updates parameters in place from averaged gradients.
type Optimizer interface {
	// Step applies one update to params given grads (same length, not
	// overlapping). grads is only read.
	Step(params, grads []float32, lr float64)
	// State returns copies of the state buffers, the step count included as
	// the 1-element buffer "step" where the optimizer keeps one.
	State() []NamedBuffer
	// SetState replaces the state with copies of bufs. It needs exactly the
	// names State returns, with the same lengths.
	SetState(bufs []NamedBuffer) error
	// Config returns the configuration with defaults filled in.
	Config() OptimizerConfig
}

// Names of the state buffers, as in PyTorch's optimizer state_dict.
const (
	BufMomentum = "momentum_buffer"
	BufExpAvg   = "exp_avg"
	BufExpAvgSq = "exp_avg_sq"
	BufStep     = "step"
)

// withDefaults fills Adam's zero fields.
func (c OptimizerConfig) withDefaults() OptimizerConfig {
	if c.Name == "adam" || c.Name == "adamw" {
		if c.Beta1 == 0 {
			c.Beta1 = 0.9
		}
		if c.Beta2 == 0 {
			c.Beta2 = 0.999
		}
		if c.Eps == 0 {
			c.Eps = 1e-8
		}
	}
	return c
}

// Validate checks the name and the ranges of the settings that name uses.
func (c OptimizerConfig) Validate() error {
	c = c.withDefaults()
	if !(c.WeightDecay >= 0) || math.IsInf(c.WeightDecay, 0) {
		return configErr("optimizer weight_decay", c.WeightDecay, "is not a finite non-negative number", "use 0 for none, typically 1e-4 to 1e-2")
	}
	switch c.Name {
	case "sgd":
		if c.Momentum != 0 {
			return configErr("optimizer momentum", c.Momentum, "is set for optimizer sgd, which has none", "use optimizer momentum or nesterov, or set momentum 0")
		}
	case "momentum", "nesterov":
		if !(c.Momentum > 0 && c.Momentum < 1) {
			return configErr("optimizer momentum", c.Momentum, "is out of range for "+c.Name, "use a value in (0, 1), typically 0.9")
		}
	case "adam", "adamw":
		if !(c.Beta1 >= 0 && c.Beta1 < 1) {
			return configErr("optimizer beta1", c.Beta1, "is out of range", "use a value in [0, 1), typically 0.9 (0 means 0.9)")
		}
		if !(c.Beta2 >= 0 && c.Beta2 < 1) {
			return configErr("optimizer beta2", c.Beta2, "is out of range", "use a value in [0, 1), typically 0.999 (0 means 0.999)")
		}
		if !(c.Eps > 0) || math.IsInf(c.Eps, 0) {
			return configErr("optimizer eps", c.Eps, "is not a finite positive number", "use a small value such as 1e-8 (0 means 1e-8)")
		}
		if c.Momentum != 0 {
			return configErr("optimizer momentum", c.Momentum, "is set for optimizer "+c.Name+", which uses beta1 instead", "set momentum 0 and beta1")
		}
	default:
		return configErr("optimizer", c.Name, "unknown", "use one of sgd, momentum, nesterov, adam, adamw")
	}
	return nil
}

// NewOptimizer returns an optimizer for nparams parameters with zero state.
func NewOptimizer(cfg OptimizerConfig, nparams int) (Optimizer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if nparams < 0 {
		return nil, fmt.Errorf("nn: NewOptimizer: nparams %d is negative; pass len(Network.Params)", nparams)
	}
	cfg = cfg.withDefaults()
	switch cfg.Name {
	case "sgd":
		return &sgd{cfg: cfg, n: nparams}, nil
	case "momentum", "nesterov":
		return &sgd{cfg: cfg, n: nparams, buf: make([]float32, nparams)}, nil
	default:
		return &adam{cfg: cfg, n: nparams, m: make([]float32, nparams), v: make([]float32, nparams)}, nil
	}
}

var (
	_ Optimizer = (*sgd)(nil)
	_ Optimizer = (*adam)(nil)
)

func checkStep(n int, params, grads []float32) {
	if len(params) != n {
		panic(&ShapeError{Op: "Optimizer.Step", Arg: "len(params)", Got: len(params), Want: n})
	}
	if len(grads) != n {
		panic(&ShapeError{Op: "Optimizer.Step", Arg: "len(grads)", Got: len(grads), Want: n})
	}
}

// setState copies bufs into dst, which maps each expected name to its
// destination; every name must appear exactly once with the right length.
func setState(kind string, dst map[string][]float32, bufs []NamedBuffer) error {
	seen := make(map[string]bool, len(bufs))
	for _, b := range bufs {
		d, ok := dst[b.Name]
		if !ok {
			return fmt.Errorf("nn: optimizer %s state: unexpected buffer %q; remove it or check the checkpoint was written by optimizer %s", kind, b.Name, kind)
		}
		if seen[b.Name] {
			return fmt.Errorf("nn: optimizer %s state: buffer %q given twice", kind, b.Name)
		}
		seen[b.Name] = true
		if len(b.Data) != len(d) {
			return fmt.Errorf("nn: optimizer %s state: buffer %q has %d elements, want %d; the checkpoint is for a different model size", kind, b.Name, len(b.Data), len(d))
		}
	}
	for name := range dst {
		if !seen[name] {
			return fmt.Errorf("nn: optimizer %s state: buffer %q missing", kind, name)
		}
	}
	for _, b := range bufs {
		copy(dst[b.Name], b.Data)
	}
	return nil
}

// decodeStep reads the step counter stored as a float32. Counts are exact up
// to 2^24 steps.
func decodeStep(v float32) (int64, error) {
	if !(v >= 0) || v > 1<<24 || v != float32(math.Trunc(float64(v))) {
		return 0, fmt.Errorf("nn: optimizer state: buffer %q holds %v, want a whole number in [0, 2^24]", BufStep, v)
	}
	return int64(v), nil
}
