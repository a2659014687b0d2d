package train

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ringtrain/ringtrain/allreduce"
	"github.com/ringtrain/ringtrain/dataset"
)

// memRings builds one generation of n ranks on an in-memory network and
// returns their reducers; the rings close at cleanup.
func memRings(t *testing.T, n int) []Reducer {
	t.Helper()
	net := allreduce.NewMemNetwork()
	addrs := make([]string, n)
	ts := make([]allreduce.Transport, n)
	for i := range n {
		addrs[i] = fmt.Sprintf("mem-%d", i)
		ts[i] = net.Transport(addrs[i])
	}
	reds := make([]Reducer, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cfg := allreduce.DefaultLocalConfig()
			cfg.RunID, cfg.Generation, cfg.Members, cfg.Rank = "step-test", 1, addrs, i
			cfg.PeerTimeout = 10 * time.Second
			r, err := allreduce.NewRing(context.Background(), ts[i], cfg)
			if err != nil {
				errs[i] = err
				return
			}
			t.Cleanup(func() { r.Close(); ts[i].Close() })
			reds[i] = RingReducer(r)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	return reds
}

// ringReplicas is world replicas of cfg on set, each stepping through its
// rank of one generation's in-memory ring.
func ringReplicas(t *testing.T, cfg Config, set *dataset.Set, world int) ([]*State, []*Stepper) {
	t.Helper()
	reds := memRings(t, world)
	states, steppers := make([]*State, world), make([]*Stepper, world)
	for r := range world {
		st, err := NewState(cfg, set)
		if err != nil {
			t.Fatal(err)
		}
		states[r], steppers[r] = st, NewStepper(st, set, reds[r])
	}
	return states, steppers
}

// stepAll runs one step on every rank concurrently; votes[r] is rank r's vote.
func stepAll(t *testing.T, steppers []*Stepper, votes []bool) []Result {
	t.Helper()
	res := make([]Result, len(steppers))
	errs := make([]error, len(steppers))
	var wg sync.WaitGroup
	for r, s := range steppers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res[r], errs[r] = s.Step(context.Background(), votes[r])
		}()
	}
	wg.Wait()
	for r, err := range errs {
		if err != nil {
			t.Fatalf("rank %d: %v", r, err)
		}
	}
	return res
}

// The oracle of a data-parallel step: N ranks stepping through a real ring
// end every step with the parameters of the single process stepping over
// the whole batch (up to float32 summation order), and with the same loss —
// with one collective per step, or one per bucket of layers started while
// backward goes on.
func TestStepperRingMatchesSingleProcess(t *testing.T) {
	defer goleak.VerifyNone(t)
	set := synthetic(512, 12, 3, 1)
	cfg := smallConfig()
	cfg.Batch = 30
	cfg.Exact = false
	_, err := NewState(cfg, set)
	if err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		world  int
		layers string
		bucket float64 // MiB: 0 one collective, 1e-4 one per layer
		n      int     // collectives per step
	}{{2, "12-16-3", 0, 1}, {3, "12-16-3", 0, 1}, {5, "12-16-3", 0, 1}, {2, "12-16-8-3", 1e-4, 3}, {3, "12-16-8-3", 1e-4, 3}, {3, "12-16-8-3", 1.5e-4, 2}} {
		t.Run(fmt.Sprint(tc), func(t *testing.T) {
			world, cfg := tc.world, cfg
			cfg.Layers, cfg.BucketMiB = tc.layers, tc.bucket
			ref, _ := NewState(cfg, set)
			refStep := NewStepper(ref, set, SingleProcess{})
			states, steppers := ringReplicas(t, cfg, set, world)
			if n := len(steppers[0].buckets); n != tc.n {
				t.Fatalf("%d collectives per step, want %d", n, tc.n)
			}
			for i := 0; i < 5; i++ {
				want, err := refStep.Step(context.Background(), false)
				if err != nil {
					t.Fatal(err)
				}
				got := stepAll(t, steppers, make([]bool, world))
				for r := range world {
					if got[r].Step != want.Step || math.Abs(got[r].Loss-want.Loss) > 1e-5 {
						t.Fatalf("rank %d step %d: loss %v, single process step %d loss %v", r, got[r].Step, got[r].Loss, want.Step, want.Loss)
					}
					for j, p := range states[r].Net.Params {
						if d := math.Abs(float64(p - ref.Net.Params[j])); d > 1e-5*math.Max(1, math.Abs(float64(p))) {
							t.Fatalf("rank %d step %d: param[%d] = %v, single process %v", r, got[r].Step, j, p, ref.Net.Params[j])
						}
					}
				}
			}
		})
	}

}

// Control values ride with the gradient: every rank sees the sum of the
// votes and every rank's compute time in that rank's slot.
func TestStepperControls(t *testing.T) {
	for _, exact := range []bool{false, true} {
		t.Run(fmt.Sprint("exact=", exact), func(t *testing.T) { testStepperControls(t, exact) })
	}
}

func testStepperControls(t *testing.T, exact bool) {
	defer goleak.VerifyNone(t)
	set := synthetic(256, 12, 3, 1)
	cfg := smallConfig()
	cfg.Exact = exact
	const world = 3
	_, steppers := ringReplicas(t, cfg, set, world)
	res := stepAll(t, steppers, []bool{false, false, false})
	for r, x := range res {
		if x.Leave {
			t.Fatalf("rank %d: Leave with no vote", r)
		}
	}
	res = stepAll(t, steppers, []bool{false, true, false})
	for r, x := range res {
		if !x.Leave {
			t.Fatalf("rank %d: Leave false after rank 1's vote", r)
		}
		if len(x.Compute) != world {
			t.Fatalf("rank %d: %d compute slots, want %d", r, len(x.Compute), world)
		}
		for q, c := range x.Compute {
			if !(c > 0) {
				t.Fatalf("rank %d sees rank %d's compute time %v, want > 0", r, q, c)
			}
		}
		if x.Bytes < 4*len(steppers[r].st.Net.Params) {
			t.Fatalf("rank %d: Bytes %d, less than the gradient's", r, x.Bytes)
		}
	}
}

// The cadence: epoch ends, every EvalEvery steps and the last step evaluate;
// every CheckpointEvery steps and the last step checkpoint.
func TestStepperCadence(t *testing.T) {
	set := synthetic(64, 12, 3, 1) // batch 32: 2 steps per epoch
	cfg := smallConfig()
	cfg.Steps = 7
	cfg.EvalEvery = 3
	cfg.CheckpointEvery = 5
	st, err := NewState(cfg, set)
	if err != nil {
		t.Fatal(err)
	}
	s := NewStepper(st, set, SingleProcess{})
	var evals, ckpts, epochs []int64
	for !st.Done() {
		r, err := s.Step(context.Background(), false)
		if err != nil {
			t.Fatal(err)
		}
		if r.Eval {
			evals = append(evals, r.Step)
		}
		if r.Checkpoint {
			ckpts = append(ckpts, r.Step)
		}
		if r.EpochEnd {
			epochs = append(epochs, r.Step)
		}
		if r.Done != (r.Step == 7) {
			t.Fatalf("step %d: Done %v", r.Step, r.Done)
		}
	}
	if fmt.Sprint(evals) != "[2 3 4 6 7]" || fmt.Sprint(ckpts) != "[5 7]" || fmt.Sprint(epochs) != "[2 4 6]" {
		t.Fatalf("evals %v checkpoints %v epoch ends %v; want [2 3 4 6 7] [5 7] [2 4 6]", evals, ckpts, epochs)
	}
}

// A NaN loss is its own error (not a replica mismatch) and applies nothing.
func TestStepperNonFinite(t *testing.T) {
	set := synthetic(64, 12, 3, 1)
	cfg := smallConfig()
	st, _ := NewState(cfg, set)
	st.Net.Params[0] = float32(math.NaN())
	before := st.ParamHash()
	_, err := NewStepper(st, set, SingleProcess{}).Step(context.Background(), false)
	if !errors.Is(err, ErrNonFinite) {
		t.Fatalf("err = %v, want ErrNonFinite", err)
	}
	if st.Step != 0 || st.ParamHash() != before {
		t.Fatalf("a failed step changed the state: step %d", st.Step)
	}
}

// A reduction that fails leaves the state at the step before it.
func TestStepperReduceFailure(t *testing.T) {
	set := synthetic(64, 12, 3, 1)
	cfg := smallConfig()
	for _, exact := range []bool{false, true} {
		cfg.Exact = exact
		st, _ := NewState(cfg, set)
		before := st.ParamHash()
		boom := errors.New("peer gone")
		_, err := NewStepper(st, set, failing{boom}).Step(context.Background(), false)
		if !errors.Is(err, boom) || st.Step != 0 || st.ParamHash() != before {
			t.Fatalf("exact=%v: err %v step %d; want the reducer's error and no step applied", exact, err, st.Step)
		}
	}
}

type failing struct{ err error }

func (failing) Rank() int                                     { return 0 }
func (failing) World() int                                    { return 2 }
func (f failing) Start(context.Context, []float32) Pending    { return done{f.err} }
func (f failing) StartInt64(context.Context, []int64) Pending { return done{f.err} }
func (f failing) StartFixed(context.Context, []int64, []float32, func(int, int)) Pending {
	return done{f.err}
}

// CheckData names the flag, the value and the fix.
func TestCheckData(t *testing.T) {
	set := synthetic(64, 12, 3, 1)
	for _, tc := range []struct {
		layers string
		batch  int
		want   string
	}{
		{"100-10", 32, "--layers 100-10 takes 100 inputs but --data synthetic has 12 features; make the first layer 12"},
		{"12-2", 32, "--layers 12-2 has 2 outputs but --data synthetic has 3 classes; make the last layer 3"},
		{"12-3", 65, "--batch 65 is larger than the training set of --data synthetic (64 examples); use a smaller --batch"},
	} {
		cfg := smallConfig()
		cfg.Layers, cfg.Batch = tc.layers, tc.batch
		_, err := NewState(cfg, set)
		if err == nil || err.Error() != tc.want {
			t.Errorf("--layers %s --batch %d: err %v\nwant %s", tc.layers, tc.batch, err, tc.want)
		}
	}
}

// Exact training: N ranks through a real ring end every step with exactly
// the parameters (the same bits) of the single process, at N = 1..5, with
// uneven splits of the micro-shards (batch 30 in micro-shards of 4: 8 of
// them, the last of 2 examples).
func TestStepperExactIsBitIdenticalAtAnyWorkerCount(t *testing.T) {
	defer goleak.VerifyNone(t)
	set := synthetic(512, 12, 3, 1)
	cfg := smallConfig()
	cfg.Batch, cfg.MicroBatch, cfg.Exact = 30, 4, true
	ref, err := NewState(cfg, set)
	if err != nil {
		t.Fatal(err)
	}
	refStep := NewStepper(ref, set, SingleProcess{})
	const steps = 6
	var want []Result
	var hashes [][32]byte
	for range steps {
		r, err := refStep.Step(context.Background(), false)
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, r)
		hashes = append(hashes, ref.ParamHash())
	}
	// Each worker count cuts the integer sum into other buckets of layers
	// (one for all, one per layer, ...): the result must not change.
	buckets := []float64{0, 1e-4, 1, 4e-4, 1e-5}
	for _, world := range []int{1, 2, 3, 4, 5} {
		t.Run(fmt.Sprint(world), func(t *testing.T) {
			cfg := cfg
			cfg.BucketMiB = buckets[world-1]
			states, steppers := ringReplicas(t, cfg, set, world)
			for i := range steps {
				got := stepAll(t, steppers, make([]bool, world))
				for r := range world {
					if got[r].Loss != want[i].Loss || states[r].ParamHash() != hashes[i] {
						t.Fatalf("rank %d of %d, step %d: loss %v hash %x; one process: loss %v hash %x",
							r, world, got[r].Step, got[r].Loss, states[r].ParamHash(), want[i].Loss, hashes[i])
					}
				}
			}
		})
	}
}

// Buckets cover the gradient exactly once, from the output layer back, each
// but the last holding at least the cap.
func TestPlanBuckets(t *testing.T) {
	layers := []int{784, 512, 512, 10} // layer sizes 401,920, 262,656, 5,130
	for _, tc := range []struct {
		cap  int
		want []bucket
	}{
		{0, []bucket{{0, 0, 669706}}},
		{1, []bucket{{2, 664576, 669706}, {1, 401920, 664576}, {0, 0, 401920}}},
		{262144, []bucket{{1, 401920, 669706}, {0, 0, 401920}}},
		{1 << 30, []bucket{{0, 0, 669706}}},
	} {
		if got := planBuckets(layers, tc.cap); fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("cap %d: %v, want %v", tc.cap, got, tc.want)
		}
	}
	if got := bucketElems(1, 4); got != 262144 {
		t.Errorf("1 MiB of float32: %d elements", got)
	}
}

// --nonfinite skip: a step whose reduced gradient holds a NaN leaves the
// parameters and the optimizer state unchanged on every rank and moves on
// (the step count, and with it the batch, advances); the next finite step
// trains as usual. Float and exact steps alike, over a real ring.
func TestStepperNonFiniteSkip(t *testing.T) {
	for _, exact := range []bool{false, true} {
		t.Run(fmt.Sprint("exact=", exact), func(t *testing.T) {
			defer goleak.VerifyNone(t)
			set := synthetic(256, 12, 3, 1)
			cfg := smallConfig()
			cfg.Exact, cfg.NonFinite = exact, NonFiniteSkip
			const world = 3
			states, steppers := ringReplicas(t, cfg, set, world)
			stepAll(t, steppers, make([]bool, world))
			// Every example turns into NaNs for the next step.
			good := append([]float32(nil), set.X...)
			for i := range set.X {
				set.X[i] = float32(math.NaN())
			}
			hashes := make([][32]byte, world)
			for r, st := range states {
				hashes[r] = st.ParamHash()
			}
			res := stepAll(t, steppers, make([]bool, world))
			for r, x := range res {
				if !x.Skipped || x.Step != 2 || states[r].ParamHash() != hashes[r] {
					t.Fatalf("rank %d: skipped %v at step %d, params changed %v; want a skipped step 2 and the same params",
						r, x.Skipped, x.Step, states[r].ParamHash() != hashes[r])
				}
			}
			copy(set.X, good)
			res = stepAll(t, steppers, make([]bool, world))
			for r, x := range res {
				if x.Skipped || x.Step != 3 || states[r].ParamHash() == hashes[r] {
					t.Fatalf("rank %d after the NaN: skipped %v step %d, params unchanged %v", r, x.Skipped, x.Step, states[r].ParamHash() == hashes[r])
				}
			}
			cfg.NonFinite = "ignore"
			if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "--nonfinite") {
				t.Fatalf("--nonfinite ignore: %v, want a usage error naming --nonfinite", err)
			}
		})
	}
}
