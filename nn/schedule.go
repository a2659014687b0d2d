package nn

import "math"

// Schedule maps a step number to a learning rate. It is a pure function of
// the step, so a restarted run resumes the curve exactly.
type Schedule struct {
	// Kind is constant (or empty), step or cosine.
	Kind string
	// WarmupSteps ramps the rate linearly over the first steps: step s < W gets
	// base*(s+1)/W, from base/W up to base. The decay below starts after it.
	WarmupSteps int
	// StepSize and Gamma: kind step multiplies the rate by Gamma every
	// StepSize steps after warm-up.
	StepSize int
	Gamma    float64
	// TotalSteps: kind cosine anneals from base to MinLR over the steps from
	// WarmupSteps to TotalSteps and stays at MinLR afterwards.
	TotalSteps int
	// MinLR is the floor for kinds step and cosine.
	MinLR float64
}

// Validate checks the kind and the fields it uses.
func (s Schedule) Validate() error {
	if s.WarmupSteps < 0 {
		return configErr("schedule warmup_steps", s.WarmupSteps, "is negative", "use 0 for no warm-up")
	}
	if !(s.MinLR >= 0) || math.IsInf(s.MinLR, 0) {
		return configErr("schedule min_lr", s.MinLR, "is not a finite non-negative number", "use 0 or a rate below the base rate")
	}
	switch s.Kind {
	case "", "constant":
	case "step":
		if s.StepSize <= 0 {
			return configErr("schedule step_size", s.StepSize, "is not positive", "set the number of steps between decays, e.g. 1000")
		}
		if !(s.Gamma > 0 && s.Gamma <= 1) {
			return configErr("schedule gamma", s.Gamma, "is out of range", "use a factor in (0, 1], e.g. 0.1")
		}
	case "cosine":
		if s.TotalSteps <= s.WarmupSteps {
			return configErr("schedule total_steps", s.TotalSteps, "is not above warmup_steps", "set it to the run's total number of steps, more than the warm-up")
		}
	default:
		return configErr("schedule", s.Kind, "unknown", "use one of constant, step, cosine")
	}
	return nil
}

// LR is the learning rate at step (counted from 0) for base rate base.
// Negative steps are treated as 0.
func (s Schedule) LR(base float64, step int) float64 {
	step = max(step, 0)
	if step < s.WarmupSteps {
		return base * float64(step+1) / float64(s.WarmupSteps)
	}
	t := step - s.WarmupSteps
	switch s.Kind {
	case "step":
		return max(base*math.Pow(s.Gamma, float64(t/s.StepSize)), s.MinLR)
	case "cosine":
		span := s.TotalSteps - s.WarmupSteps
		frac := float64(min(t, span)) / float64(span)
		return s.MinLR + (base-s.MinLR)*(1+math.Cos(math.Pi*frac))/2
	default:
		return base
	}
}

// ClipGradNorm returns the L2 norm of grads taken as one vector and, when
// maxNorm > 0 and the norm exceeds it, scales grads in place by
// maxNorm/(norm+1e-6), as torch.nn.utils.clip_grad_norm_.
func ClipGradNorm(grads []float32, maxNorm float64) (norm float64) {
	var sum float64
	for _, g := range grads {
		sum += float64(g) * float64(g)
	}
	norm = math.Sqrt(sum)
	if maxNorm > 0 && norm > maxNorm {
		k := float32(maxNorm / (norm + 1e-6))
		for i := range grads {
			grads[i] *= k
		}
	}
	return norm
}
