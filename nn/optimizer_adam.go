package nn

import "math"

// adam is torch.optim.Adam (L2 weight decay) or AdamW (decoupled), amsgrad off:
//
//	t += 1
//	p *= 1 - lr*λ                 (adamw)      g = grad + λp   (adam)
//	m = β1 m + (1-β1) g
//	v = β2 v + (1-β2) g²
//	p -= lr/(1-β1^t) * m / (sqrt(v)/sqrt(1-β2^t) + ε)
type adam struct {
	cfg  OptimizerConfig
	n    int
	m, v []float32
	step int64
}

func (o *adam) Config() OptimizerConfig { return o.cfg }

func (o *adam) Step(params, grads []float32, lr float64) {
	checkStep(o.n, params, grads)
	o.step++
	t := float64(o.step)
	b1, b2 := float32(o.cfg.Beta1), float32(o.cfg.Beta2)
	stepSize := float32(lr / (1 - math.Pow(o.cfg.Beta1, t)))
	invSqrtBC2 := float32(1 / math.Sqrt(1-math.Pow(o.cfg.Beta2, t)))
	eps := float32(o.cfg.Eps)
	var l2, decay float32 = 0, 1
	if o.cfg.Name == "adamw" {
		decay = float32(1 - lr*o.cfg.WeightDecay)
	} else {
		l2 = float32(o.cfg.WeightDecay)
	}
	grads = grads[:len(params)]
	m, v := o.m[:len(params)], o.v[:len(params)]
	for i, g := range grads {
		p := params[i]
		if decay != 1 {
			p *= decay
		}
		if l2 != 0 {
			g += l2 * p
		}
		mi := b1*m[i] + (1-b1)*g
		vi := b2*v[i] + (1-b2)*g*g
		m[i], v[i] = mi, vi
		denom := float32(math.Sqrt(float64(vi)))*invSqrtBC2 + eps
		params[i] = p - stepSize*mi/denom
	}
}

func (o *adam) State() []NamedBuffer {
	return []NamedBuffer{
		{Name: BufExpAvg, Data: append([]float32(nil), o.m...)},
		{Name: BufExpAvgSq, Data: append([]float32(nil), o.v...)},
		{Name: BufStep, Data: []float32{float32(o.step)}},
	}
}

func (o *adam) SetState(bufs []NamedBuffer) error {
	step := make([]float32, 1)
	m := make([]float32, o.n)
	v := make([]float32, o.n)
	if err := setState(o.cfg.Name, map[string][]float32{BufExpAvg: m, BufExpAvgSq: v, BufStep: step}, bufs); err != nil {
		return err
	}
	s, err := decodeStep(step[0])
	if err != nil {
		return err
	}
	o.m, o.v, o.step = m, v, s
	return nil
}
