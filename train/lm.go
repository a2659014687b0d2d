package train

import (
	"context"
	"fmt"
	"math"
	"math/bits"
	"time"

	"github.com/ringtrain/ringtrain/dataset"
	"github.com/ringtrain/ringtrain/internal/usage"
	"github.com/ringtrain/ringtrain/nn"
)

// Levenberg–Marquardt (--optimizer lm).
//
// A step is one Levenberg–Marquardt iteration over the global batch of B
// examples: with residuals e = t - y over its examples and outputs and
// J = ∂y/∂w, every rank solves (JᵀJ + μI) Δ = Jᵀe for the summed system,
// tries w + Δ and keeps it when the batch's loss drops (μ shrinks by
// --lm-mu-down); otherwise it raises μ by --lm-mu-up and solves again, up to
// --lm-trials times, after which the step leaves the parameters as they were
// (with μ raised). μ never exceeds lmMaxMu.
//
// The system is summed exactly, on the plan exact.go follows for gradients.
// The batch is cut into K = ceil(B/MicroBatch) micro-shards; rank r of N
// computes micro-shards dataset.ShardRange(K, r, N), and for each one nn
// builds JᵀJ (the packed upper triangle), Jᵀe and the loss sum in float64.
// JᵀJ and Jᵀe each get one binary scale: the ranks exchange the largest
// exponent E of any micro-shard's bound (nn.LMSystem.Bounds) in a small
// float32 collective, each rank in its own slots, beside the vote. Every
// micro-shard's values become the integers trunc(v · 2^(62−c−E)),
// c = ceil(log2 K) (float64 values, hence 62 bits rather than the float32
// gradients' 51), and the ring sums them as int64. Each micro-shard's loss
// sum rides in its own int64 slot as its float64 bits (the other ranks add
// zeros), and every rank adds the K losses in micro-shard order. So every
// rank holds the same system, bit for bit, whatever N; gonum's Cholesky is
// deterministic, so every rank computes the same Δ. A trial's loss is
// summed the same way (the K micro-shard losses in their slots, one int64
// collective), and every rank takes the same decision.
//
// A step therefore costs two passes over this rank's micro-shards (bounds,
// then the system: J is computed twice, JᵀJ once), a float32 collective of
// 3N+1 values, an int64 collective of P(P+1)/2 + P + K + N values and, per
// trial, a forward pass and an int64 collective of K values. The solve is
// O(P³) on every rank, so --lm-max-params bounds P.
//
// The damping μ is the optimizer's state ("mu", one float32: every value μ
// takes is rounded to float32, so it travels and is checkpointed exactly).
// A failed collective returns an error with the parameters, μ and the step
// as they were before the step.

// OptimizerLM is the --optimizer value of Levenberg–Marquardt.
const OptimizerLM = "lm"

// Levenberg–Marquardt's defaults: Marquardt's damping schedule as the
// backpropagation literature uses it (μ = 0.001, ×10 after a rejected
// trial, ×0.1 after an accepted step), and a size limit measured on one
// process of 2 cores (batch 128, 1-H-1 tanh on sine data): a step
// takes 0.07 s at 500 parameters, 0.4 s at 1,000 (27 MiB), 3.1 s at 2,000
// (108 MiB) and 33 s at 4,000 (429 MiB) — the solve grows as P³, the
// system's memory and its all-reduce as P².
const (
	DefaultLMMu        = 1e-3
	DefaultLMMuUp      = 10
	DefaultLMMuDown    = 0.1
	DefaultLMTrials    = 10
	DefaultLMMaxParams = 1000
)

const (
	// lmMaxMu caps μ: beyond it a step is a negligible gradient step.
	lmMaxMu = 1e10
	// lmMinMu keeps μ a normal float32 (0x1p-126).
	lmMinMu = 0x1p-126
	// lmExpFloor bounds the fixed-point scale of a quantity whose values
	// are all (nearly) zero, so that 2^shift stays a finite float64.
	lmExpFloor = -900
	// lmBoundHuge: bounds at or beyond it are treated as non-finite.
	lmBoundHuge = 0x1p900
	// lmFixedBits: float64 values in 62-bit fixed point (truncated), sums
	// of K ≤ 2^c micro-shards below 2^62.
	lmFixedBits = 62
)

// BufMu is the name of LM's state buffer: the damping μ.
const BufMu = "mu"

// validateLM checks the Levenberg–Marquardt settings and what LM needs of
// the rest of the spec. Each error names the flags and values at fault.
func (c Spec) validateLM() error {
	if c.Loss != "mse" {
		return usage.Errorf("--optimizer lm needs --loss mse, not --loss %s: Levenberg-Marquardt fits squared residuals; use --loss mse with real-valued targets (e.g. --data sine:40), or a first-order --optimizer",
			c.Loss)
	}
	spec, err := c.NetSpec()
	if err != nil {
		return err
	}
	if c.LMMaxParams < 1 {
		return usage.Errorf("--lm-max-params %d must be at least 1, e.g. --lm-max-params %d", c.LMMaxParams, DefaultLMMaxParams)
	}
	if p := spec.NumParams(); p > c.LMMaxParams {
		return usage.Errorf("--optimizer lm: --layers %s has %d parameters, above --lm-max-params %d (each step sums and solves a %d×%d system, %s per copy); use a smaller network, raise --lm-max-params, or a first-order --optimizer",
			c.Layers, p, c.LMMaxParams, p, p, bytesString(8*int64(p)*int64(p)))
	}
	switch {
	case !(c.LMMu > 0 && c.LMMu < lmMaxMu):
		return usage.Errorf("--lm-mu %v must be in (0, %g), e.g. --lm-mu %g", c.LMMu, float64(lmMaxMu), DefaultLMMu)
	case !(c.LMMuUp > 1) || math.IsInf(c.LMMuUp, 0):
		return usage.Errorf("--lm-mu-up %v must be a finite factor above 1, e.g. --lm-mu-up %g", c.LMMuUp, float64(DefaultLMMuUp))
	case !(c.LMMuDown > 0 && c.LMMuDown < 1):
		return usage.Errorf("--lm-mu-down %v must be a factor in (0, 1), e.g. --lm-mu-down %g", c.LMMuDown, DefaultLMMuDown)
	case c.LMTrials < 1:
		return usage.Errorf("--lm-trials %d must be at least 1, e.g. --lm-trials %d", c.LMTrials, DefaultLMTrials)
	case !c.Exact:
		return usage.New("--optimizer lm always sums its system exactly; remove --exact=false")
	case c.ClipNorm != 0:
		return usage.Errorf("--clip-norm %v does not apply to --optimizer lm (its damping bounds the step); set --clip-norm 0", c.ClipNorm)
	case c.WeightDecay != 0:
		return usage.Errorf("--weight-decay %v does not apply to --optimizer lm; set --weight-decay 0", c.WeightDecay)
	}
	return nil
}

func bytesString(b int64) string {
	switch {
	case b >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(b)/(1<<30))
	case b >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20))
	}
	return fmt.Sprintf("%.1f KiB", float64(b)/(1<<10))
}

// checkTargets checks that the training set has what cfg's loss needs:
// real-valued targets, one per output, for mse and bce, and that only
// --optimizer lm is given a regression set (the first-order step gathers
// class labels only).
func checkTargets(cfg Config, data *dataset.Set, out int) error {
	switch {
	case cfg.Loss != "cross_entropy" && data.Targets == nil:
		return usage.Errorf("--loss %s needs real-valued targets but --data %s has class labels; use --loss cross_entropy, or regression data such as --data sine:40",
			cfg.Loss, cfg.Data)
	case data.Targets != nil && data.Outputs != out:
		return usage.Errorf("--layers %s has %d outputs but --data %s has %d targets per example; make the last layer %d",
			cfg.Layers, out, cfg.Data, data.Outputs, data.Outputs)
	}
	return nil
}

// lmOptimizer is the State's optimizer under --optimizer lm. Its state is
// the damping μ; Stepper.Step runs the LM step (stepLM) and leaves the
// accepted increment in Net.Grads for Step, through State.Apply, so that
// the non-finite check and the cadence are the first-order step's.
type lmOptimizer struct {
	net    *nn.Network
	cfg    nn.LMConfig
	trials int
	mu     float32 // the damping of the next step

	// The step's decision, applied by Step: take Net.Grads (float32 Δ),
	// then μ = next.
	accept bool
	next   float32

	sys       *nn.LMSystem // built on the first step
	jtj, jte  []float64    // one micro-shard's system
	sJtJ, sJe []float64    // the summed system
	delta     []float64
	acc       []int64   // JᵀJ, Jᵀe (fixed point), K loss slots, N compute slots
	slots     []int64   // a trial's K loss slots
	ctl       []float32 // exponents (2 per rank), vote
	compute   []float32 // each rank's compute seconds, for Result.Compute
	saved     []float32
}

var _ nn.Optimizer = (*lmOptimizer)(nil)

// newLMOptimizer is the optimizer of an lm run over net and its training
// set (already checked by CheckData), μ at --lm-mu.
func newLMOptimizer(cfg Config, net *nn.Network) (*lmOptimizer, error) {
	if err := cfg.validateLM(); err != nil {
		return nil, err
	}
	lc := nn.LMConfig{Mu: cfg.LMMu, MuUp: cfg.LMMuUp, MuDown: cfg.LMMuDown, MaxMu: lmMaxMu, MaxParams: cfg.LMMaxParams}
	if err := lc.Validate(); err != nil {
		return nil, usage.New(err.Error())
	}
	return &lmOptimizer{net: net, cfg: lc, trials: cfg.LMTrials, mu: roundMu(cfg.LMMu)}, nil
}

// roundMu is μ as the state keeps it: a float32 within [lmMinMu, lmMaxMu].
func roundMu(mu float64) float32 { return float32(min(max(mu, lmMinMu), lmMaxMu)) }

// Step applies the step stepLM decided: params += grads (the accepted
// float32 Δ, exactly the trial's parameters) and the new damping. lr is
// not used: the damping sets LM's step.
func (o *lmOptimizer) Step(params, grads []float32, lr float64) {
	if o.accept {
		for i, d := range grads {
			params[i] += d
		}
	}
	o.mu, o.accept = o.next, false
}

func (o *lmOptimizer) State() []nn.NamedBuffer {
	return []nn.NamedBuffer{{Name: BufMu, Data: []float32{o.mu}}}
}

func (o *lmOptimizer) SetState(bufs []nn.NamedBuffer) error {
	if len(bufs) != 1 || bufs[0].Name != BufMu || len(bufs[0].Data) != 1 {
		names := make([]string, len(bufs))
		for i, b := range bufs {
			names[i] = fmt.Sprintf("%q[%d]", b.Name, len(b.Data))
		}
		return fmt.Errorf("train: optimizer lm state: buffers %v, want one %q of 1 value; the checkpoint was written by another optimizer", names, BufMu)
	}
	mu := bufs[0].Data[0]
	if !(mu >= lmMinMu && mu <= lmMaxMu) {
		return fmt.Errorf("train: optimizer lm state: %q is %v, want a damping in [%g, %g]", BufMu, mu, float64(lmMinMu), float64(lmMaxMu))
	}
	o.mu, o.accept = mu, false
	return nil
}

func (o *lmOptimizer) Config() nn.OptimizerConfig { return nn.OptimizerConfig{Name: OptimizerLM} }

// Mu is the damping of the next step.
func (o *lmOptimizer) Mu() float32 { return o.mu }

// ensure sizes the scratch for P parameters, K micro-shards and N ranks.
func (o *lmOptimizer) ensure(k, world int) error {
	p := len(o.net.Params)
	if o.sys == nil {
		sys, err := nn.NewLMSystem(o.net, o.cfg.MaxParams)
		if err != nil {
			return usage.New(err.Error())
		}
		tri := nn.PackedLen(p)
		o.sys = sys
		o.jtj, o.sJtJ = make([]float64, tri), make([]float64, tri)
		o.jte, o.sJe, o.delta = make([]float64, p), make([]float64, p), make([]float64, p)
		o.saved = make([]float32, p)
	}
	if n := nn.PackedLen(p) + p + k + world; len(o.acc) != n {
		o.acc = make([]int64, n)
	}
	if len(o.slots) != k {
		o.slots = make([]int64, k)
	}
	if len(o.ctl) != 2*world+1 {
		o.ctl = make([]float32, 2*world+1)
		o.compute = make([]float32, world)
	}
	return nil
}

// stepLM is Stepper.Step under --optimizer lm.
func (s *Stepper) stepLM(ctx context.Context, vote bool, o *lmOptimizer) (Result, error) {
	st := s.st
	rank, world := s.red.Rank(), s.red.World()
	params := st.Net.Params
	np := len(params)
	k := st.Cfg.MicroShards()
	c := bits.Len(uint(k - 1))
	if err := o.ensure(k, world); err != nil {
		return Result{}, err
	}
	tri := nn.PackedLen(np)
	lo, hi := dataset.ShardRange(k, rank, world)
	idx := st.batchIndices(s.data)
	batch := func(j int) nn.Batch { return st.gather(s.data, st.Cfg.microShard(idx, j)) }
	var reduce time.Duration
	collective := func(p Pending) error {
		t := time.Now()
		err := p.Wait()
		reduce += time.Since(t)
		return err
	}

	// Pass 1: each micro-shard's bounds; the ranks agree on the scales.
	t0 := time.Now()
	expJtJ, expJe := expZero, expZero
	for j := lo; j < hi; j++ {
		bJtJ, bJe, _ := o.sys.Bounds(batch(j))
		expJtJ, expJe = max(expJtJ, boundExp(bJtJ, lmBoundHuge)), max(expJe, boundExp(bJe, lmBoundHuge))
	}
	clear(o.ctl)
	o.ctl[2*rank], o.ctl[2*rank+1] = float32(expJtJ), float32(expJe)
	if vote {
		o.ctl[2*world] = 1
	}
	if err := collective(s.red.Start(ctx, o.ctl)); err != nil {
		return Result{}, fmt.Errorf("step %d: lm exponents: %w", st.Step, err)
	}
	for r := range world {
		expJtJ, expJe = max(expJtJ, int(o.ctl[2*r])), max(expJe, int(o.ctl[2*r+1]))
	}
	if expJtJ >= expNonFinite || expJe >= expNonFinite {
		return Result{}, fmt.Errorf("%w: the Jacobian or the residuals of step %d have a NaN or infinity (optimizer lm)", ErrNonFinite, st.Step)
	}

	// Pass 2: the system in fixed point, summed exactly.
	shJtJ, shJe := fixedShift(lmFixedBits, c, expJtJ, lmExpFloor), fixedShift(lmFixedBits, c, expJe, lmExpFloor)
	clear(o.acc)
	for j := lo; j < hi; j++ {
		clear(o.jtj)
		clear(o.jte)
		loss := o.sys.Add(batch(j), o.jtj, o.jte)
		addFixed(o.acc[:tri], o.jtj, shJtJ)
		addFixed(o.acc[tri:tri+np], o.jte, shJe)
		o.acc[tri+np+j] = int64(math.Float64bits(loss))
	}
	computeTime := time.Since(t0) - reduce
	o.acc[tri+np+k+rank] = computeTime.Nanoseconds()
	if err := collective(s.red.StartInt64(ctx, o.acc)); err != nil {
		return Result{}, fmt.Errorf("step %d: %w", st.Step, err)
	}
	fromFixed64(o.sJtJ, o.acc[:tri], shJtJ)
	fromFixed64(o.sJe, o.acc[tri:tri+np], shJe)
	before := sumLossSlots(o.acc[tri+np:tri+np+k]) / float64(st.Cfg.Batch)
	for r := range world {
		o.compute[r] = float32(time.Duration(o.acc[tri+np+k+r]).Seconds())
	}
	if math.IsNaN(before) || math.IsInf(before, 0) {
		return Result{}, fmt.Errorf("%w: the loss is %v at step %d (optimizer lm)", ErrNonFinite, before, st.Step)
	}

	// Trials: the same solves and decisions on every rank.
	bytes := 4*len(o.ctl) + 8*len(o.acc)
	t1 := time.Now()
	reduceBefore := reduce
	copy(o.saved, params)
	mu := float64(o.mu)
	loss, accept := before, false
	for range o.trials {
		if o.sys.Solve(o.sJtJ, o.sJe, mu, o.delta) {
			for i, d := range o.delta {
				params[i] = o.saved[i] + float32(d)
			}
			clear(o.slots)
			for j := lo; j < hi; j++ {
				l, _ := st.Net.Evaluate(batch(j), 0)
				o.slots[j] = int64(math.Float64bits(l))
			}
			err := collective(s.red.StartInt64(ctx, o.slots))
			bytes += 8 * len(o.slots)
			copy(params, o.saved)
			if err != nil {
				return Result{}, fmt.Errorf("step %d: lm trial at mu %g: %w", st.Step, mu, err)
			}
			if after := sumLossSlots(o.slots) / float64(st.Cfg.Batch); after < before {
				loss, accept = after, true
				break
			}
		}
		mu = min(mu*o.cfg.MuUp, lmMaxMu)
	}
	computeTime += time.Since(t1) - (reduce - reduceBefore)
	grads := st.Net.Grads
	if accept {
		for i, d := range o.delta {
			grads[i] = float32(d)
		}
		mu *= o.cfg.MuDown
	} else {
		clear(grads)
	}
	o.accept, o.next = accept, roundMu(mu)
	return s.apply(loss, false, o.ctl[2*world] > 0, o.compute, computeTime, reduce, bytes)
}

// addFixed adds trunc(v · 2^shift) of every v in vs to acc.
func addFixed(acc []int64, vs []float64, shift int) {
	scale := math.Ldexp(1, shift)
	for i, v := range vs {
		acc[i] += int64(v * scale)
	}
}

// fromFixed64 sets vs[i] = acc[i] · 2^−shift (one rounding, in the int64
// to float64 conversion).
func fromFixed64(vs []float64, acc []int64, shift int) {
	scale := math.Ldexp(1, -shift)
	for i, a := range acc {
		vs[i] = float64(a) * scale
	}
}

// sumLossSlots adds the micro-shard loss sums held as float64 bits, in
// micro-shard order.
func sumLossSlots(slots []int64) float64 {
	var sum float64
	for _, b := range slots {
		sum += math.Float64frombits(uint64(b))
	}
	return sum
}
