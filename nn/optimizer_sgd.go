package nn

// sgd is plain SGD (buf nil) or SGD with heavy-ball or Nesterov momentum,
// following torch.optim.SGD with dampening 0:
//
//	g = grad + λp;  v = μv + g;  p -= lr*v          (momentum)
//	                             p -= lr*(g + μv)   (nesterov)
//
// PyTorch sets v = g on the first step; with v starting at zero, μv + g is the
// same value.
type sgd struct {
	cfg OptimizerConfig
	n   int
	buf []float32
}

func (o *sgd) Config() OptimizerConfig { return o.cfg }

func (o *sgd) Step(params, grads []float32, lr float64) {
	checkStep(o.n, params, grads)
	rate, wd, mu := float32(lr), float32(o.cfg.WeightDecay), float32(o.cfg.Momentum)
	grads = grads[:len(params)]
	// Weight decay is a separate loop so that the common λ = 0 case runs
	// without a test per element; like PyTorch, λ = 0 adds nothing at all.
	switch {
	case o.cfg.Name == "sgd" && wd == 0:
		for i, g := range grads {
			params[i] -= rate * g
		}
	case o.cfg.Name == "sgd":
		for i, g := range grads {
			params[i] -= rate * (g + wd*params[i])
		}
	case wd == 0:
		momentumStep(params, grads, o.buf, rate, mu, o.cfg.Name == "nesterov")
	default:
		momentumStepDecay(params, grads, o.buf, rate, mu, wd, o.cfg.Name == "nesterov")
	}
}

func momentumStep(params, grads, buf []float32, rate, mu float32, nesterov bool) {
	buf = buf[:len(params)]
	grads = grads[:len(params)]
	if nesterov {
		for i, g := range grads {
			v := mu*buf[i] + g
			buf[i] = v
			params[i] -= rate * (g + mu*v)
		}
		return
	}
	for i, g := range grads {
		v := mu*buf[i] + g
		buf[i] = v
		params[i] -= rate * v
	}
}

func momentumStepDecay(params, grads, buf []float32, rate, mu, wd float32, nesterov bool) {
	buf = buf[:len(params)]
	grads = grads[:len(params)]
	for i, g := range grads {
		g += wd * params[i]
		v := mu*buf[i] + g
		buf[i] = v
		if nesterov {
			params[i] -= rate * (g + mu*v)
		} else {
			params[i] -= rate * v
		}
	}
}

func (o *sgd) State() []NamedBuffer {
	if o.buf == nil {
		return nil
	}
	return []NamedBuffer{{Name: BufMomentum, Data: append([]float32(nil), o.buf...)}}
}

func (o *sgd) SetState(bufs []NamedBuffer) error {
	dst := map[string][]float32{}
	if o.buf != nil {
		dst[BufMomentum] = o.buf
	}
	return setState(o.cfg.Name, dst, bufs)
}
