package train

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/ringtrain/ringtrain/dataset"
)

// ErrNonFinite: the global batch's reduced loss or gradient has a NaN or an
// infinity; with --nonfinite stop (the default) the run cannot go on from
// this state (a learning rate too high, no clipping).
var ErrNonFinite = errors.New("train: non-finite loss or gradient")

// Reducer combines the ranks' contributions to a step: every rank passes a
// buffer of the same length and every rank gets back the element-wise sum.
// A ring all-reduce is one (RingReducer); SingleProcess is the one-rank
// combine, so one process runs exactly the same step as a cluster.
//
// A step may start several collectives (one per bucket of layers while
// backward goes on, a control vector beside the gradients); they complete
// in the order they were started, on every rank.
type Reducer interface {
	// Rank and World place this process among the ranks (0 <= Rank < World).
	Rank() int
	World() int
	// Start begins replacing buf, on every rank, with the sum of every
	// rank's buf and returns at once. buf must be neither read nor written
	// until the returned Pending's Wait has returned.
	Start(ctx context.Context, buf []float32) Pending
	// StartInt64 is Start for integers, summed with wrap-around int64
	// addition: exact and independent of the order of the ranks.
	StartInt64(ctx context.Context, buf []int64) Pending
	// StartFixed is StartInt64 whose result is out, the float32 images of
	// the sums: convert(lo, hi) sets out[lo:hi] from the sums in acc[lo:hi]
	// alone; each rank converts the part whose sum it completes and the
	// ranks exchange the floats, not the integers. Afterwards acc holds no
	// useful values; neither buffer may be touched until Wait returns.
	StartFixed(ctx context.Context, acc []int64, out []float32, convert func(lo, hi int)) Pending
}

// Pending is a collective in flight.
type Pending interface {
	// Wait blocks until the collective is done (bounded by the reducer's
	// peer timeout) and returns its error. Every Pending must be waited.
	Wait() error
}

// SingleProcess is the Reducer of a run in one process: the sum over one
// rank is the buffer itself.
type SingleProcess struct{}

func (SingleProcess) Rank() int  { return 0 }
func (SingleProcess) World() int { return 1 }

func (SingleProcess) Start(ctx context.Context, buf []float32) Pending { return done{ctx.Err()} }

func (SingleProcess) StartInt64(ctx context.Context, buf []int64) Pending { return done{ctx.Err()} }

func (SingleProcess) StartFixed(ctx context.Context, acc []int64, out []float32, convert func(lo, hi int)) Pending {
	if err := ctx.Err(); err != nil {
		return done{err}
	}
	convert(0, len(acc))
	return done{}
}

type done struct{ err error }

func (d done) Wait() error { return d.err }

// Vector is the buffer the ranks reduce each step: the control values
// first — the sum of the losses, the votes to end the generation after this
// step, and each rank's compute time in its own slot (the others add zeros),
// so every rank learns every rank's time without another collective — then
// the gradient of the global batch (each rank's share scaled by 1/B). The
// controls lead so that they travel with the last bucket of the gradient,
// the one backward finishes last.
type Vector struct {
	buf       []float32
	np, world int
}

// Control slots before the gradient.
const (
	slotLoss    = 0
	slotVote    = 1
	slotCompute = 2 // world slots, one per rank
)

// NewVector is a step vector for nparams parameters and world ranks.
func NewVector(nparams, world int) Vector {
	return Vector{buf: make([]float32, slotCompute+world+nparams), np: nparams, world: world}
}

// controls is the number of control slots.
func (v Vector) controls() int { return slotCompute + v.world }

// Raw is the whole vector, as reduced.
func (v Vector) Raw() []float32 { return v.buf }

// Grads is the gradient part (the network's Grads during a step).
func (v Vector) Grads() []float32 { return v.buf[v.controls():] }

// LossSum is the reduced sum of the losses of the global batch.
func (v Vector) LossSum() float64 { return float64(v.buf[slotLoss]) }

// Votes is how many ranks voted to end the generation after this step.
func (v Vector) Votes() int { return int(v.buf[slotVote]) }

// Compute is each rank's compute time of the step in seconds, by rank. The
// slice aliases the vector: it is valid until the next step.
func (v Vector) Compute() []float32 { return v.buf[slotCompute:v.controls():v.controls()] }

// setControls writes this rank's control values before the reduction.
func (v Vector) setControls(rank int, lossSum float64, vote bool, compute time.Duration) {
	c := v.buf[:v.controls()]
	clear(c)
	c[slotLoss] = float32(lossSum)
	if vote {
		c[slotVote] = 1
	}
	c[slotCompute+rank] = float32(compute.Seconds())
}

// Result is what one step did.
type Result struct {
	// Step is the number of steps applied, this one included.
	Step int64
	// Loss is the mean loss over the global batch (0 when Skipped).
	Loss float64
	// LR is the learning rate the step used.
	LR float64
	// Leave: some rank voted to end the generation after this step.
	Leave bool
	// Compute is each rank's compute time in seconds (valid until the next step).
	Compute []float32
	// ComputeTime is this rank's forward and backward; ReduceTime its wait
	// for the reduction.
	ComputeTime, ReduceTime time.Duration
	// Bytes is the size of the reduced vector.
	Bytes int
	// EpochEnd: the step ended an epoch. Eval: the test set is due
	// (epoch ends, every EvalEvery steps, the last step). Checkpoint: a
	// checkpoint is due (every CheckpointEvery steps, the last step).
	EpochEnd, Eval, Checkpoint bool
	// Done: the run has applied all its steps.
	Done bool
	// Skipped: the reduced loss or gradient was not finite and the run's
	// --nonfinite skip left the parameters unchanged; Step still advanced.
	Skipped bool
}

// Stepper runs the training step of one replica: its shard of global batch
// State.Step forward and backward, the reduction of the gradient and the
// control values, the non-finite check and the optimizer step, and it says
// what the run's cadence asks for next (evaluation, checkpoint). The single
// process (`ringtrain train`), the cluster worker and `ringtrain bench train`
// all train through it.
type Stepper struct {
	st    *State
	data  *dataset.Set
	red   Reducer
	vec   Vector
	exact *exactState // nil: the float32 step
	// buckets are the float32 step's collectives, in the order started.
	buckets []bucket
	starter startBuckets
}

// NewStepper binds st to its training data and a reducer. The network's
// gradient buffer becomes the gradient part of the step vector, so the
// gradient is reduced where backward wrote it.
func NewStepper(st *State, data *dataset.Set, red Reducer) *Stepper {
	s := &Stepper{st: st, data: data, red: red, vec: NewVector(len(st.Net.Params), red.World())}
	st.Net.Grads = s.vec.Grads()
	if st.Cfg.Exact {
		s.exact = newExactState(st, red.World())
		st.Net.Grads = s.exact.out[:len(st.Net.Params)]
	}
	s.buckets = planBuckets(st.Net.Spec.Layers, bucketElems(st.Cfg.BucketMiB, 4))
	return s
}

// Step trains one step. vote asks the ranks to end the generation after it
// (every rank sees the sum in Result.Leave). An error leaves the state as it
// was before the step when the reduction failed; ErrNonFinite leaves it
// unchanged too.
func (s *Stepper) Step(ctx context.Context, vote bool) (Result, error) {
	if err := ctx.Err(); err != nil {
		return Result{}, err
	}
	if lm, ok := s.st.Opt.(*lmOptimizer); ok {
		return s.stepLM(ctx, vote, lm)
	}
	if s.exact != nil {
		return s.stepExact(ctx, vote)
	}
	return s.stepFloat(ctx, vote)
}

// stepFloat is Stepper.Step on the float32 path: this rank's shard of the
// batch in one backward pass, each bucket's all-reduce started as soon as
// backward has finished its layers, the last one with the control values.
func (s *Stepper) stepFloat(ctx context.Context, vote bool) (Result, error) {
	st := s.st
	rank, world := s.red.Rank(), s.red.World()
	t0 := time.Now()
	grads := s.vec.Grads()
	sb := &s.starter
	*sb = startBuckets{ctx: ctx, red: s.red, grads: grads, buckets: s.buckets, pending: sb.pending[:0]}
	idx := st.batchIndices(s.data)
	lo, hi := dataset.ShardRange(st.Cfg.Batch, rank, world)
	var lossSum float64
	if hi > lo {
		lossSum = st.Net.ComputeGradientsThen(st.gather(s.data, idx[lo:hi]), float32(1/float64(st.Cfg.Batch)), sb.ready)
	} else {
		clear(grads)
		for l := st.Net.NumLayers() - 1; l >= 0; l-- {
			sb.ready(l)
		}
	}
	compute := time.Since(t0)
	s.vec.setControls(rank, lossSum, vote, compute)
	last := s.buckets[len(s.buckets)-1]
	t1 := time.Now()
	sb.pending = append(sb.pending, s.red.Start(ctx, s.vec.Raw()[:s.vec.controls()+last.end]))
	if err := waitAll(sb.pending); err != nil {
		return Result{}, fmt.Errorf("step %d: %w", st.Step, err)
	}
	return s.apply(s.vec.LossSum()/float64(st.Cfg.Batch), false, s.vec.Votes() > 0, s.vec.Compute(), compute, time.Since(t1), 4*len(s.vec.Raw()))
}

// apply checks the reduced loss and gradient, takes the optimizer step with
// the reduced gradient in Net.Grads (or, when they are not finite, stops
// or skips as the spec says) and says what the cadence asks for.
// gradsFinite: the caller already knows every gradient value is finite (an
// exact step's, converted back from integers), so no pass over them is made.
func (s *Stepper) apply(loss float64, gradsFinite, leave bool, compute []float32, computeTime, reduceTime time.Duration, bytes int) (Result, error) {
	st := s.st
	if math.IsNaN(loss) || math.IsInf(loss, 0) || !gradsFinite && !allFinite(st.Net.Grads) {
		return s.nonFinite(fmt.Sprintf("the loss is %v", loss), leave, compute, computeTime, reduceTime, bytes)
	}
	lr := st.Apply()
	return s.cadence(Result{Loss: loss, LR: lr, Leave: leave, Compute: compute,
		ComputeTime: computeTime, ReduceTime: reduceTime, Bytes: bytes}), nil
}

// nonFinite ends the step whose reduced values are not finite (what says
// which): ErrNonFinite with the state unchanged, or with --nonfinite skip a
// skipped step — parameters and optimizer state unchanged, the step count
// (and with it the data cursor and the schedule) advanced.
func (s *Stepper) nonFinite(what string, leave bool, compute []float32, computeTime, reduceTime time.Duration, bytes int) (Result, error) {
	st := s.st
	if st.Cfg.nonFinite() != NonFiniteSkip {
		return Result{}, fmt.Errorf("%w: %s at step %d; lower --lr (now %v), set --clip-norm, or --nonfinite skip",
			ErrNonFinite, what, st.Step, st.Cfg.LR)
	}
	lr := st.Sched.LR(st.Cfg.LR, int(st.Step))
	st.Step++
	return s.cadence(Result{LR: lr, Leave: leave, Compute: compute, Skipped: true,
		ComputeTime: computeTime, ReduceTime: reduceTime, Bytes: bytes}), nil
}

// cadence completes r for the step just taken: its number and what the
// run's cadence asks for next.
func (s *Stepper) cadence(r Result) Result {
	st := s.st
	step, spec := st.Step, st.Cfg.Spec
	r.Step, r.Done = step, st.Done()
	r.EpochEnd = step%int64(st.StepsPerEpoch) == 0
	r.Eval = r.EpochEnd || r.Done || (spec.EvalEvery > 0 && step%int64(spec.EvalEvery) == 0)
	r.Checkpoint = r.Done || (spec.CheckpointEvery > 0 && step%int64(spec.CheckpointEvery) == 0)
	return r
}

// allFinite reports whether every value of v is finite. Every rank holds the
// same reduced gradient, so every rank decides alike.
func allFinite(v []float32) bool {
	var acc float32
	for _, x := range v {
		acc += x - x // NaN for a NaN or an infinity, else 0
	}
	return acc == 0
}
