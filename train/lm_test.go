package train

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/ringtrain/ringtrain/dataset"
	"github.com/ringtrain/ringtrain/internal/usage"
	"github.com/ringtrain/ringtrain/nn"
)

// lmTarget is the mean squared error of nn's sine test
// (TestLevenbergMarquardtBeatsSGD), which LM reaches there in 109
// iterations and SGD with momentum in 7,799.
const lmTarget = 1e-3

// lmConfig fits sin on 40 points with a 1-10-1 tanh network, the whole set
// in every step, cut into micro-shards of 16, 16 and 8.
func lmConfig() Config {
	c := DefaultConfig()
	c.Layers, c.Activation, c.Loss, c.WeightInit = "1-10-1", "tanh", "mse", "glorot"
	c.Optimizer = OptimizerLM
	c.Batch, c.Steps, c.CheckpointEvery, c.Data = 40, 200, 0, "sine:40"
	return c
}

// stepsToTarget steps until a step's loss is at most lmTarget and returns
// that step's number (-1: not within limit), with the loss after each step.
func stepsToTarget(t *testing.T, step func() (Result, error), limit int) (int, []float64) {
	t.Helper()
	var losses []float64
	for i := 1; i <= limit; i++ {
		r, err := step()
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		losses = append(losses, r.Loss)
		if r.Loss <= lmTarget {
			return i, losses
		}
	}
	return -1, losses
}

// LM in one process, through train.Run: it reaches nn's sine MSE within
// nn's bound, and far sooner than SGD with momentum from the same start.
func TestLMFitsSine(t *testing.T) {
	train, test := dataset.Sine(40)
	cfg := lmConfig()
	reached := int64(-1)
	sum, err := Run(context.Background(), cfg, Options{Train: train, Test: test, OnStep: func(step int64, loss float64) {
		if reached < 0 && loss <= lmTarget {
			reached = step
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	if reached < 0 || reached > 150 {
		t.Fatalf("LM reached mse %g at step %d (-1: never in %d); nn's test bound is 150", lmTarget, reached, cfg.Steps)
	}
	if sum.TestLoss > lmTarget || sum.Step != cfg.Steps {
		t.Fatalf("summary %+v: want %d steps and the midpoints' mse within %g", sum, cfg.Steps, lmTarget)
	}

	// SGD with momentum (lr 0.05, as in nn's test) from the same initial
	// weights on the same full batch.
	st, _ := NewState(cfg, train)
	net := st.Net.Clone()
	opt, _ := nn.NewOptimizer(nn.OptimizerConfig{Name: "momentum", Momentum: 0.9}, len(net.Params))
	b := nn.Batch{X: train.X, Targets: train.Targets, N: train.N}
	sgd := -1
	for it := 1; it <= 30000; it++ {
		net.ComputeGradients(b, 1/float32(b.N))
		opt.Step(net.Params, net.Grads, 0.05)
		if loss, _ := net.Evaluate(b, 0); loss/float64(b.N) <= lmTarget {
			sgd = it
			break
		}
	}
	t.Logf("steps to mse %g on sine:40 with 1-10-1 tanh: lm %d, momentum (lr 0.05) %d (-1: not within 30000); lm test mse %.3g",
		lmTarget, reached, sgd, sum.TestLoss)
	if sgd >= 0 && sgd < 10*int(reached) {
		t.Errorf("SGD needed %d steps, LM %d: want LM at least 10x fewer", sgd, reached)
	}
}

// The oracle of the distributed LM step: N ranks over real in-memory rings
// reach the target in the same step as one process, with the same loss and
// the same parameter bits after every step (micro-shards 16+16+8 split 3
// ways, 2 ways unevenly, and 4 ways with a rank that computes nothing).
func TestLMRingIsBitIdentical(t *testing.T) {
	defer goleak.VerifyNone(t)
	set, _ := dataset.Sine(40)
	cfg := lmConfig()
	ref, err := NewState(cfg, set)
	if err != nil {
		t.Fatal(err)
	}
	one := NewStepper(ref, set, SingleProcess{})
	var hashes [][32]byte
	var mus []float32
	want, losses := stepsToTarget(t, func() (Result, error) {
		r, err := one.Step(context.Background(), false)
		hashes, mus = append(hashes, ref.ParamHash()), append(mus, ref.Opt.(*lmOptimizer).Mu())
		return r, err
	}, 200)
	if want < 0 {
		t.Fatalf("one process did not reach mse %g in 200 steps", lmTarget)
	}
	for _, world := range []int{3, 2, 4} {
		t.Run(fmt.Sprint(world), func(t *testing.T) {
			states, steppers := ringReplicas(t, cfg, set, world)
			i := 0
			got, _ := stepsToTarget(t, func() (Result, error) {
				res := stepAll(t, steppers, make([]bool, world))
				for r := range world {
					mu := states[r].Opt.(*lmOptimizer).Mu()
					if res[r].Loss != losses[i] || states[r].ParamHash() != hashes[i] || mu != mus[i] {
						t.Fatalf("rank %d of %d, step %d: loss %v mu %v hash %x; one process: loss %v mu %v hash %x",
							r, world, res[r].Step, res[r].Loss, mu, states[r].ParamHash(), losses[i], mus[i], hashes[i])
					}
				}
				i++
				return res[0], nil
			}, 200)
			if got != want {
				t.Fatalf("%d ranks reached mse %g at step %d, one process at %d", world, lmTarget, got, want)
			}
		})
	}
	t.Logf("1, 3, 2 and 4 ranks: mse %g at step %d, the same parameters after every step", lmTarget, want)
}

// μ is the optimizer's state: it rides in the state transfer and in
// checkpoints, so a replica that receives the state, or a run resumed from a
// checkpoint, goes on with the same bits.
func TestLMStateCarriesMu(t *testing.T) {
	set, test := dataset.Sine(40)
	cfg := lmConfig()
	a, _ := NewState(cfg, set)
	sa := NewStepper(a, set, SingleProcess{})
	for range 7 {
		if _, err := sa.Step(context.Background(), false); err != nil {
			t.Fatal(err)
		}
	}
	if mu := a.Opt.(*lmOptimizer).Mu(); mu == float32(cfg.LMMu) {
		t.Fatalf("μ is still %v after 7 steps; the test needs a changed μ", mu)
	}
	b, _ := NewState(cfg, set)
	if err := b.SetFlatState(a.FlatState()); err != nil {
		t.Fatal(err)
	}
	dir, err := a.Save(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := NewState(cfg, set)
	if _, err := c.RestoreDir(dir); err != nil {
		t.Fatal(err)
	}
	sb, sc := NewStepper(b, set, SingleProcess{}), NewStepper(c, set, SingleProcess{})
	for range 5 {
		for _, s := range []*Stepper{sa, sb, sc} {
			if _, err := s.Step(context.Background(), false); err != nil {
				t.Fatal(err)
			}
		}
		if b.ParamHash() != a.ParamHash() || c.ParamHash() != a.ParamHash() || b.Step != a.Step || c.Step != a.Step {
			t.Fatalf("step %d after the transfer: transferred equal %v, restored equal %v", a.Step, b.ParamHash() == a.ParamHash(), c.ParamHash() == a.ParamHash())
		}
	}

	// Resume through Run: interrupted at step 20 and resumed, the losses
	// are the uninterrupted run's.
	cfg.Steps = 40
	var want []float64
	if _, err := Run(context.Background(), cfg, Options{Train: set, Test: test,
		OnStep: func(_ int64, l float64) { want = append(want, l) }}); err != nil {
		t.Fatal(err)
	}
	cfg.CheckpointDir, cfg.CheckpointEvery = t.TempDir(), 10
	ctx, cancel := context.WithCancel(context.Background())
	if _, err := Run(ctx, cfg, Options{Train: set, Test: test, OnStep: func(step int64, _ float64) {
		if step == 20 {
			cancel()
		}
	}}); !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted run: %v", err)
	}
	var got []float64
	if _, err := Run(context.Background(), cfg, Options{Train: set, Test: test,
		OnStep: func(_ int64, l float64) { got = append(got, l) }}); err != nil {
		t.Fatal(err)
	}
	if len(got) != 20 {
		t.Fatalf("resumed run applied %d steps, want 20", len(got))
	}
	for i, l := range got {
		if math.Float64bits(l) != math.Float64bits(want[20+i]) {
			t.Fatalf("step %d: resumed loss %v, uninterrupted %v", 21+i, l, want[20+i])
		}
	}
}

// failAt is a one-rank reducer whose collective number n (from 1) fails.
type failAt struct {
	n, calls int
	err      error
}

func (f *failAt) Rank() int  { return 0 }
func (f *failAt) World() int { return 1 }
func (f *failAt) next(ctx context.Context) Pending {
	f.calls++
	if f.calls == f.n {
		return done{f.err}
	}
	return done{ctx.Err()}
}
func (f *failAt) Start(ctx context.Context, _ []float32) Pending    { return f.next(ctx) }
func (f *failAt) StartInt64(ctx context.Context, _ []int64) Pending { return f.next(ctx) }
func (f *failAt) StartFixed(ctx context.Context, _ []int64, _ []float32, _ func(int, int)) Pending {
	return f.next(ctx)
}

// A collective that fails — the exponents (1), the system (2) or a trial's
// loss (3) — returns its error from Step and leaves the parameters, μ and
// the step as they were; the retried step is then the undisturbed one.
func TestLMCollectiveFailureLeavesTheState(t *testing.T) {
	set, _ := dataset.Sine(40)
	cfg := lmConfig()
	ref, _ := NewState(cfg, set)
	count := &failAt{}
	want, err := NewStepper(ref, set, count).Step(context.Background(), false)
	if err != nil || count.calls < 3 {
		t.Fatalf("undisturbed step: %v after %d collectives, want at least 3", err, count.calls)
	}
	boom := errors.New("peer gone")
	for n := 1; n <= 3; n++ {
		st, _ := NewState(cfg, set)
		hash, mu := st.ParamHash(), st.Opt.(*lmOptimizer).Mu()
		_, err := NewStepper(st, set, &failAt{n: n, err: boom}).Step(context.Background(), false)
		if !errors.Is(err, boom) || st.Step != 0 || st.ParamHash() != hash || st.Opt.(*lmOptimizer).Mu() != mu {
			t.Fatalf("collective %d failed: err %v, step %d, params changed %v, mu %v (was %v); want the error and no change",
				n, err, st.Step, st.ParamHash() != hash, st.Opt.(*lmOptimizer).Mu(), mu)
		}
		got, err := NewStepper(st, set, SingleProcess{}).Step(context.Background(), false)
		if err != nil || got.Loss != want.Loss || st.ParamHash() != ref.ParamHash() || st.Opt.(*lmOptimizer).Mu() != ref.Opt.(*lmOptimizer).Mu() {
			t.Fatalf("collective %d failed: the retried step differs from the undisturbed one (err %v, loss %v vs %v)", n, err, got.Loss, want.Loss)
		}
	}
}

// A NaN is its own error and applies nothing.
func TestLMNonFinite(t *testing.T) {
	set, _ := dataset.Sine(40)
	st, _ := NewState(lmConfig(), set)
	st.Net.Params[0] = float32(math.NaN())
	_, err := NewStepper(st, set, SingleProcess{}).Step(context.Background(), false)
	if !errors.Is(err, ErrNonFinite) || st.Step != 0 {
		t.Fatalf("err %v step %d, want ErrNonFinite and no step", err, st.Step)
	}
}

// The vote and every rank's compute time ride with the LM step's
// collectives, as with the first-order step.
func TestLMControls(t *testing.T) {
	defer goleak.VerifyNone(t)
	set, _ := dataset.Sine(40)
	const world = 3
	_, steppers := ringReplicas(t, lmConfig(), set, world)
	for _, votes := range [][]bool{{false, false, false}, {false, false, true}} {
		for r, x := range stepAll(t, steppers, votes) {
			if x.Leave != votes[2] || len(x.Compute) != world {
				t.Fatalf("votes %v: rank %d Leave %v, %d compute slots", votes, r, x.Leave, len(x.Compute))
			}
			for q, c := range x.Compute {
				if !(c > 0) {
					t.Fatalf("rank %d sees rank %d's compute time %v, want > 0", r, q, c)
				}
			}
		}
	}
}

// Bad LM settings are usage errors naming the flags and their values.
func TestLMValidate(t *testing.T) {
	for _, tc := range []struct {
		mutate func(*Config)
		want   string
	}{
		{func(c *Config) { c.Loss = "cross_entropy" }, "--optimizer lm needs --loss mse, not --loss cross_entropy"},
		{func(c *Config) { c.Layers = "1-100-100-1" }, "--optimizer lm: --layers 1-100-100-1 has 10401 parameters, above --lm-max-params 1000"},
		{func(c *Config) { c.Layers, c.LMMaxParams = "1-10-1", 30 }, "--layers 1-10-1 has 31 parameters, above --lm-max-params 30"},
		{func(c *Config) { c.LMMu = 0 }, "--lm-mu 0 must be in (0, 1e+10)"},
		{func(c *Config) { c.LMMuUp = 1 }, "--lm-mu-up 1 must be a finite factor above 1"},
		{func(c *Config) { c.LMMuDown = 1.5 }, "--lm-mu-down 1.5 must be a factor in (0, 1)"},
		{func(c *Config) { c.LMTrials = 0 }, "--lm-trials 0 must be at least 1"},
		{func(c *Config) { c.LMMaxParams = 0 }, "--lm-max-params 0 must be at least 1"},
		{func(c *Config) { c.Exact = false }, "--optimizer lm always sums its system exactly; remove --exact=false"},
		{func(c *Config) { c.ClipNorm = 1 }, "--clip-norm 1 does not apply to --optimizer lm"},
		{func(c *Config) { c.WeightDecay = 0.1 }, "--weight-decay 0.1 does not apply to --optimizer lm"},
		{func(c *Config) { c.Optimizer = "lbfgs" }, `--optimizer "lbfgs" unknown; use one of sgd, momentum, nesterov, adam, adamw, lm`},
	} {
		c := lmConfig()
		tc.mutate(&c)
		err := c.Validate()
		if !usage.Is(err) || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("Validate = %v\nwant one line containing %q", err, tc.want)
		}
	}
	if err := lmConfig().Validate(); err != nil {
		t.Fatal(err)
	}
	// The LM settings are inert for the other optimizers.
	c := DefaultConfig()
	c.LMMu, c.LMTrials = -1, 0
	if err := c.Validate(); err != nil {
		t.Fatalf("LM settings checked for --optimizer momentum: %v", err)
	}
}

// The data must fit the loss: targets for mse, one per output.
func TestLMData(t *testing.T) {
	sine, _ := dataset.Sine(40)
	for _, tc := range []struct {
		mutate func(*Config)
		data   *dataset.Set
		want   string
	}{
		{func(c *Config) { c.Layers = "1-10-2" }, sine, "--layers 1-10-2 has 2 outputs but --data sine:40 has 1 targets per example; make the last layer 1"},
		{func(c *Config) { c.Layers, c.Data = "12-3", "synthetic" }, synthetic(64, 12, 3, 1), "--loss mse needs real-valued targets but --data synthetic has class labels"},
	} {
		c := lmConfig()
		tc.mutate(&c)
		_, err := NewState(c, tc.data)
		if !usage.Is(err) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("NewState = %v\nwant a usage error containing %q", err, tc.want)
		}
	}
}

// Checkpoints of other runs keep resuming: a spec without the LM fields
// (an older manifest) differs from this run's only in them, which matter
// only to --optimizer lm; --lm-max-params never changes a result.
func TestLMResultDiff(t *testing.T) {
	old := DefaultConfig().Spec
	old.LMMu, old.LMMuUp, old.LMMuDown, old.LMTrials, old.LMMaxParams = 0, 0, 0, 0, 0
	if flag, a, b, differs := old.ResultDiff(DefaultConfig().Spec); differs {
		t.Fatalf("an older spec differs in --%s (%v, %v)", flag, a, b)
	}
	a, b := lmConfig().Spec, lmConfig().Spec
	b.LMMaxParams = 5000
	if _, _, _, differs := a.ResultDiff(b); differs {
		t.Fatal("--lm-max-params changes the result")
	}
	b.LMMuDown = 0.2
	if flag, _, _, differs := a.ResultDiff(b); !differs || flag != "lm-mu-down" {
		t.Fatalf("an LM run with another --lm-mu-down: differs %v in %q", differs, flag)
	}
}

// The LM settings are flags and config-file keys like every spec field.
func TestLMFlagsAndConfigFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "run.yaml")
	if err := os.WriteFile(path, []byte("optimizer: lm\nloss: mse\nlm_mu: 0.01\nlm_trials: 4\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	err := ParseArgs(flag.NewFlagSet("t", flag.ContinueOnError), []string{"--config", path, "--lm-mu-up", "5", "--lm-mu-down", "0.5", "--lm-max-params", "77"}, &cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Optimizer != OptimizerLM || cfg.LMMu != 0.01 || cfg.LMTrials != 4 || cfg.LMMuUp != 5 || cfg.LMMuDown != 0.5 || cfg.LMMaxParams != 77 {
		t.Fatalf("parsed %+v", cfg.Spec)
	}
	b, _ := json.Marshal(cfg.Spec)
	for _, key := range []string{`"lm_mu":0.01`, `"lm_mu_up":5`, `"lm_mu_down":0.5`, `"lm_trials":4`, `"lm_max_params":77`} {
		if !strings.Contains(string(b), key) {
			t.Errorf("the spec's JSON %s lacks %s", b, key)
		}
	}
}

// First-order optimizers train regression data too (the targets reach the
// loss in both the float32 and the exact step), so LM can be compared with
// them through the same command.
func TestFirstOrderRegression(t *testing.T) {
	sine, test := dataset.Sine(40)
	for _, exact := range []bool{false, true} {
		c := lmConfig()
		c.Optimizer, c.LR, c.Schedule, c.Steps, c.Exact = "adam", 0.05, "constant", 400, exact
		sum, err := Run(context.Background(), c, Options{Train: sine, Test: test})
		if err != nil {
			t.Fatal(err)
		}
		if sum.TestLoss > 0.01 {
			t.Errorf("exact=%v: adam on sine:40, test MSE %v after 400 steps, want < 0.01", exact, sum.TestLoss)
		}
	}
}
