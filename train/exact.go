package train

import (
	"context"
	"fmt"
	"math"
	"math/bits"
	"time"

	"github.com/ringtrain/ringtrain/dataset"
	"github.com/ringtrain/ringtrain/nn"
)

// DefaultMicroBatch is the default micro-shard size of exact training.
const DefaultMicroBatch = 16

// Exact training.
//
// The global batch of B examples is cut into K = ceil(B/MicroBatch)
// micro-shards, micro-shard j being batch positions [j·m, min((j+1)·m, B)).
// Rank r of N computes the contiguous micro-shards dataset.ShardRange(K, r, N)
// — uneven splits are fine — and a micro-shard's gradient has the same
// float32 bits whoever computes it (given the same GEMM backend, kernels and
// thread count: the fingerprint): with a fixed-point kernel
// (nn.FixedKernel) in one forward and backward over the rank's rows
// (nn.BackwardMicro), else each micro-shard as its own pass.
//
// The micro-shard gradients are then summed exactly. Each parameter tensor
// (a layer's weight or bias) and the loss sum is a bucket with one scale for
// the whole run's step: the ranks first agree, by an exact exchange, on the
// largest binary exponent E of a bound on the bucket's values in any
// micro-shard (|v| < 2^E; nn.GradientBounds), and every value is converted to
// the integer round(v · 2^(51−c−E)) with c = ceil(log2 K), so that K of them
// sum below 2^51 — straight from registers with the fixed-point kernel
// (nn.FixedWeightGrad), else from each micro-shard's gradient (toFixed).
// Integer addition is exact and associative: the ring sums the integers in
// its reduce-scatter, the rank that completes a chunk converts it back with
// one rounding, and the all-gather carries the float32s
// (allreduce.Ring.AllReduceInt64ToFloat32). The reduced gradient therefore
// has the same bits whatever N, the ring order, or which rank holds which
// micro-shard; each value is rounded to a multiple of 2^(E+c−51), about
// 2^−48 of the bucket's largest, far below float32's own resolution of the
// sum.
//
// A step costs a small collective (the exponents, beside the control
// values) and the exact sum (12 bytes an element against the float32
// path's 8), cut into buckets of layers (--bucket-mib) so that the ring
// sums one bucket while the next is converted; integer sums do not depend
// on the cut.

// exactState is a Stepper's scratch for exact steps.
type exactState struct {
	k       int         // micro-shards per global batch
	c       int         // ceil(log2 k)
	buckets []span      // parameter tensors within the gradient
	grads   [][]float32 // this rank's micro-shard gradients
	losses  []float64   // and loss sums
	ctl     []float32   // exponents (world × (buckets+1)), vote, compute (world)
	acc     []int64     // the integer gradient, then the loss sum
	// out is the reduced gradient, then the loss sum, as float32: the
	// network's Grads are out[:len(out)-1]. converts[i] converts collective
	// i's sums into it.
	out      []float32
	converts []func(lo, hi int)
	exps     []int     // this rank's exponent per bucket (+ loss)
	bounds   []float64 // one micro-shard's gradient bounds per bucket
	// fused: the micro-shards' gradients go straight to integers
	// (nn.FixedKernel); mbounds holds every local micro-shard's bounds.
	fused   bool
	mbounds []float64
	// collectives are the integer sum's buckets of layers, in the order
	// started (the run's --bucket-mib; the result does not depend on it).
	collectives []bucket
	pending     []Pending
}

type span struct{ off, len int }

// fixedBits is the integers' range: each value is below 2^(fixedBits−c) and
// the sum of the k ≤ 2^c micro-shards below 2^fixedBits, within the exact
// range of the conversions (2^51) and far within int64.
const fixedBits = 51

// Exponent sentinels, exact in float32: a bucket whose values are all zero,
// and one with a NaN or an infinity.
const (
	expZero      = -1000
	expNonFinite = 1000
	// expFloor bounds the scale for buckets of subnormals.
	expFloor = -160
)

func newExactState(st *State, world int) *exactState {
	k := st.Cfg.MicroShards()
	e := &exactState{k: k, c: bits.Len(uint(k - 1)), fused: nn.FixedKernel() != ""}
	layers := st.Net.Spec.Layers
	off := 0
	for i := 1; i < len(layers); i++ {
		w := layers[i-1] * layers[i]
		e.buckets = append(e.buckets, span{off, w}, span{off + w, layers[i]})
		off += w + layers[i]
	}
	nb := len(e.buckets) + 1
	e.exps = make([]int, nb)
	e.bounds = make([]float64, nb-1)
	e.ctl = make([]float32, world*nb+1+world)
	e.acc = make([]int64, off+1)
	e.out = make([]float32, off+1)
	e.collectives = planBuckets(layers, bucketElems(st.Cfg.BucketMiB, 8))
	for i := range e.collectives {
		e.converts = append(e.converts, func(lo, hi int) { e.convert(i, lo, hi) })
	}
	return e
}

// microRange is the micro-shards rank computes: [lo, hi) of k.
func (e *exactState) microRange(rank, world int) (lo, hi int) {
	return dataset.ShardRange(e.k, rank, world)
}

// stepExact is Stepper.Step in exact mode.
func (s *Stepper) stepExact(ctx context.Context, vote bool) (Result, error) {
	st, e := s.st, s.exact
	rank, world := s.red.Rank(), s.red.World()
	nb := len(e.buckets) + 1
	t0 := time.Now()

	// This rank's micro-shards: with a fixed-point kernel one forward and
	// backward over them all (BackwardMicro), the gradients left for the
	// conversion below; else each its own backward pass into its own
	// float32 gradient.
	lo, hi := e.microRange(rank, world)
	for len(e.losses) < hi-lo {
		e.losses = append(e.losses, 0)
		if !e.fused {
			e.grads = append(e.grads, make([]float32, len(st.Net.Params)))
		}
	}
	idx := st.batchIndices(s.data)
	for b := range e.exps {
		e.exps[b] = expZero
	}
	var local [][]float32
	var rows nn.Batch
	if e.fused {
		m := st.Cfg.MicroBatch
		rows = st.gather(s.data, idx[min(lo*m, len(idx)):min(hi*m, len(idx))])
		if need := (hi - lo) * len(e.bounds); len(e.mbounds) < need {
			e.mbounds = make([]float64, need)
		}
		st.Net.BackwardMicro(rows, m, float32(1/float64(st.Cfg.Batch)), e.losses, e.mbounds)
		for j := range hi - lo {
			e.boundExps(e.mbounds[j*len(e.bounds):(j+1)*len(e.bounds)], e.losses[j])
		}
	} else {
		local = e.grads[:hi-lo]
		saved := st.Net.Grads
		for j := lo; j < hi; j++ {
			b := st.gather(s.data, st.Cfg.microShard(idx, j))
			st.Net.Grads = local[j-lo]
			e.losses[j-lo] = st.Net.ComputeGradients(b, float32(1/float64(st.Cfg.Batch)))
			st.Net.GradientBounds(b, e.bounds)
			e.boundExps(e.bounds, e.losses[j-lo])
		}
		st.Net.Grads = saved
	}
	compute := time.Since(t0)
	clear(e.ctl)
	for b, x := range e.exps {
		e.ctl[rank*nb+b] = float32(x)
	}
	if vote {
		e.ctl[world*nb] = 1
	}
	e.ctl[world*nb+1+rank] = float32(compute.Seconds())
	t1 := time.Now()
	if err := s.red.Start(ctx, e.ctl).Wait(); err != nil {
		return Result{}, fmt.Errorf("step %d: exponents: %w", st.Step, err)
	}
	for b := range nb {
		e.exps[b] = expZero
		for r := range world {
			e.exps[b] = max(e.exps[b], int(e.ctl[r*nb+b]))
		}
		if e.exps[b] >= expNonFinite {
			// Every rank holds the same exponents: all stop, or all skip
			// the step without its integer sum.
			return s.nonFinite("the gradient or loss has a NaN or infinity", e.ctl[world*nb] > 0, e.ctl[world*nb+1:], compute, time.Since(t1), 4*len(e.ctl))
		}
	}

	// The exact sum: integers, summed by the ring, one collective per
	// bucket of layers from the output back (the loss sum rides with the
	// first), each started as soon as its integers are ready so that the
	// ring sums one bucket while the next is converted.
	np := len(st.Net.Params)
	ls := e.shift(e.exps[nb-1])
	e.acc[np] = 0
	for _, l := range e.losses[:hi-lo] {
		e.acc[np] += int64(math.Ldexp(l, ls))
	}
	bytes := 0
	if world == 1 && e.fused {
		// One process: the sums are final where they are made, so the
		// kernel converts them back at once (the same bits as a
		// collective's conversion) and nothing is reduced.
		if err := ctx.Err(); err != nil {
			return Result{}, fmt.Errorf("step %d: %w", st.Step, err)
		}
		for b, sp := range e.buckets {
			out := e.out[sp.off : sp.off+sp.len]
			if b%2 == 0 {
				st.Net.FixedWeightGradFloat(rows, b/2, e.shift(e.exps[b]), out)
				continue
			}
			acc := e.acc[sp.off : sp.off+sp.len]
			st.Net.FixedBiasGrad(b/2, e.shift(e.exps[b]), acc)
			fromFixed(out, acc, e.shift(e.exps[b]))
		}
		e.convertLoss()
	} else {
		if err := s.reduceExact(ctx, local, rows, lo, hi); err != nil {
			return Result{}, fmt.Errorf("step %d: %w", st.Step, err)
		}
		bytes = 4*len(e.ctl) + 12*len(e.acc)
	}
	// The gradient is in Net.Grads (e.out), converted from the sums by
	// the ranks that completed them; the loss sum rides behind it.
	loss := float64(e.out[np]) / float64(st.Cfg.Batch)
	return s.apply(loss, true, e.ctl[world*nb] > 0, e.ctl[world*nb+1:], compute, time.Since(t1), bytes)
}

// reduceExact turns this rank's micro-shard gradients into integers, one
// bucket of layers at a time from the output back (the loss sum, already in
// acc, rides with the first), and starts each bucket's collective as soon
// as its integers are ready, so that the ring sums one bucket while the next
// is converted; it returns when all are done, the gradient in e.out.
func (s *Stepper) reduceExact(ctx context.Context, local [][]float32, rows nn.Batch, lo, hi int) error {
	st, e := s.st, s.exact
	np := len(st.Net.Params)
	e.pending = e.pending[:0]
	for i, bk := range e.collectives {
		for b, sp := range e.buckets {
			if sp.off < bk.off || sp.off >= bk.end {
				continue
			}
			acc := e.acc[sp.off : sp.off+sp.len]
			switch {
			case !e.fused:
				toFixed(acc, local, sp, e.shift(e.exps[b]))
			case hi == lo:
				clear(acc)
			case b%2 == 0:
				st.Net.FixedWeightGrad(rows, b/2, e.shift(e.exps[b]), acc)
			default:
				st.Net.FixedBiasGrad(b/2, e.shift(e.exps[b]), acc)
			}
		}
		end := bk.end
		if i == 0 {
			end = np + 1
		}
		e.pending = append(e.pending, s.red.StartFixed(ctx, e.acc[bk.off:end], e.out[bk.off:end], e.converts[i]))
	}
	return waitAll(e.pending)
}

// convert is the conversion of collective i's sums, elements [lo, hi) of
// its buffer: each parameter tensor's integers back to float32 with its
// scale (one rounding), and the loss sum, behind the gradient, likewise.
func (e *exactState) convert(i, lo, hi int) {
	base := e.collectives[i].off
	lo, hi = base+lo, base+hi
	np := len(e.acc) - 1
	for b, sp := range e.buckets {
		l, h := max(lo, sp.off), min(hi, sp.off+sp.len)
		if l < h {
			fromFixed(e.out[l:h], e.acc[l:h], e.shift(e.exps[b]))
		}
	}
	if lo <= np && np < hi {
		e.convertLoss()
	}
}

// convertLoss converts the summed loss, behind the gradient, with its scale.
func (e *exactState) convertLoss() {
	np := len(e.acc) - 1
	e.out[np] = float32(math.Ldexp(float64(e.acc[np]), -e.shift(e.exps[len(e.exps)-1])))
}

// boundExps raises the exponents of this rank's step to cover one
// micro-shard: its gradient bounds per bucket (nn.GradientBounds, derived
// from the activations and deltas, so no pass over the gradient is needed)
// and its loss sum.
func (e *exactState) boundExps(bounds []float64, loss float64) {
	for b, v := range bounds {
		e.exps[b] = max(e.exps[b], boundExp(v, math.MaxFloat32))
	}
	last := len(e.exps) - 1
	e.exps[last] = max(e.exps[last], boundExp(math.Abs(loss), math.MaxFloat32))
}

// shift is the binary scale of a bucket whose largest exponent is exp.
func (e *exactState) shift(exp int) int { return fixedShift(fixedBits, e.c, exp, expFloor) }

// fixedShift is the binary scale that puts values below 2^exp (exp raised
// to floor at least) below 2^(bits−c), so that 2^c of them sum below 2^bits.
func fixedShift(bits, c, exp, floor int) int { return bits - c - max(exp, floor) }

// boundExp is the smallest E with bound < 2^E, for a bound ≥ 0 on some
// values' magnitudes: expZero for 0, expNonFinite for NaN, infinity or a
// bound of limit or more (float32 gradients: where a value may have
// overflowed float32; LM's float64 systems: lmBoundHuge).
func boundExp(bound, limit float64) int {
	switch {
	case bound == 0:
		return expZero
	case !(bound < limit):
		return expNonFinite
	}
	_, e := math.Frexp(bound)
	return e
}

// fixedBlock is how many elements toFixed sums at a time: the block's
// integers stay in the L1 cache while each micro-shard's values stream by.
const fixedBlock = 2048

// The fixed-point conversions run on an AVX2 kernel where the CPU has one
// (fixed_amd64.s), else on the Go loops below; both give the same bits (the
// test compares them), so the kernel is not part of the fingerprint.
const (
	kernelGo = iota
	kernelAVX2
)

var fixedKernel = kernelGo

// magic is 1.5·2^52: x + magic, for |x| < 2^51, is x rounded to an integer
// and held in the low bits of the float64.
const (
	magic     = 0x1.8p52
	magicBits = 0x4338000000000000
)

// toFixed sets acc[i] to the sum over the micro-shard gradients gs of
// round(g[sp.off+i] · 2^shift), each |g · 2^shift| < 2^51.
func toFixed(acc []int64, gs [][]float32, sp span, shift int) {
	scale := math.Ldexp(1, shift)
	for lo := 0; lo < len(acc); lo += fixedBlock {
		a := acc[lo:min(lo+fixedBlock, len(acc))]
		if len(gs) == 0 {
			clear(a)
			continue
		}
		for j, g := range gs {
			fixedInto(a, g[sp.off+lo:sp.off+lo+len(a)], scale, j > 0)
		}
	}
}

// fixedInto sets (or, with add, adds to) acc[i] round(g[i] · scale), to
// nearest, ties to even: adding 1.5·2^52 leaves the integer in the low bits
// for |g[i] · scale| < 2^51 (as the AVX2 kernel does).
func fixedInto(acc []int64, g []float32, scale float64, add bool) {
	i := 0
	if fixedKernel == kernelAVX2 {
		i = fixedSIMD(acc, g, scale, add)
	}
	acc, g = acc[i:], g[i:len(acc)]
	if add {
		for i, v := range g {
			acc[i] += int64(math.Float64bits(float64(v)*scale+magic) - magicBits)
		}
		return
	}
	for i, v := range g {
		acc[i] = int64(math.Float64bits(float64(v)*scale+magic) - magicBits)
	}
}

// fromFixed sets g[i] = acc[i] · 2^−shift, rounded once to float32.
func fromFixed(g []float32, acc []int64, shift int) {
	scale := math.Ldexp(1, -shift)
	i := 0
	if fixedKernel == kernelAVX2 {
		i = fromFixedSIMD(g, acc, scale)
	}
	g, acc = g[i:len(acc)], acc[i:]
	for i, v := range acc {
		g[i] = float32(float64(v) * scale)
	}
}
