package train

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ringtrain/ringtrain/checkpoint"
	"github.com/ringtrain/ringtrain/dataset"
	"github.com/ringtrain/ringtrain/internal/usage"
	"github.com/ringtrain/ringtrain/nn"
)

// synthetic is a small separable classification set: the label is the
// argmax of a fixed linear map of the features.
func synthetic(n, dim, classes int, seed uint64) *dataset.Set {
	wrng := rand.New(rand.NewPCG(7, 7)) // the rule is the same for every seed
	w := make([]float64, dim*classes)
	for i := range w {
		w[i] = wrng.NormFloat64()
	}
	rng := rand.New(rand.NewPCG(seed, 7))
	s := &dataset.Set{X: make([]float32, n*dim), Labels: make([]int32, n), N: n, Dim: dim, Classes: classes}
	for i := 0; i < n; i++ {
		best, arg := math.Inf(-1), 0
		for c := 0; c < classes; c++ {
			v := 0.0
			for j := 0; j < dim; j++ {
				if c == 0 {
					s.X[i*dim+j] = rng.Float32() - 0.5
				}
				v += w[c*dim+j] * float64(s.X[i*dim+j])
			}
			if v > best {
				best, arg = v, c
			}
		}
		s.Labels[i] = int32(arg)
	}
	return s
}

func smallConfig() Config {
	c := DefaultConfig()
	c.Layers = "12-16-3"
	c.Batch = 32
	c.Steps = 40
	c.LR = 0.1
	c.CheckpointEvery = 10
	c.Data = "synthetic"
	return c
}

func TestResumeIsBitForBit(t *testing.T) {
	set, test := synthetic(512, 12, 3, 1), synthetic(128, 12, 3, 2)
	cfg := smallConfig()

	var want []float64
	if _, err := Run(context.Background(), cfg, Options{Train: set, Test: test,
		OnStep: func(_ int64, l float64) { want = append(want, l) }}); err != nil {
		t.Fatal(err)
	}

	cfg.CheckpointDir = t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	_, err := Run(ctx, cfg, Options{Train: set, Test: test, OnStep: func(step int64, _ float64) {
		if step == 20 {
			cancel()
		}
	}})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted run: %v, want context.Canceled", err)
	}
	var got []float64
	sum, err := Run(context.Background(), cfg, Options{Train: set, Test: test,
		OnStep: func(_ int64, l float64) { got = append(got, l) }})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 20 || sum.Step != 40 {
		t.Fatalf("resumed run applied %d steps ending at %d, want 20 ending at 40", len(got), sum.Step)
	}
	for i, l := range got {
		if math.Float64bits(l) != math.Float64bits(want[20+i]) {
			t.Fatalf("step %d: resumed loss %v != uninterrupted %v", 21+i, l, want[20+i])
		}
	}
}

func TestCorruptCheckpointIsSkipped(t *testing.T) {
	set, test := synthetic(256, 12, 3, 1), synthetic(64, 12, 3, 2)
	cfg := smallConfig()
	cfg.Steps = 20
	cfg.CheckpointDir = t.TempDir()
	if _, err := Run(context.Background(), cfg, Options{Train: set, Test: test}); err != nil {
		t.Fatal(err)
	}
	dirs, err := checkpoint.List(cfg.CheckpointDir)
	if err != nil || len(dirs) != 2 {
		t.Fatalf("checkpoints %v (%v), want 2", dirs, err)
	}
	// Corrupt the newest (step 20): the next run resumes from step 10.
	path := filepath.Join(dirs[1], "model.safetensors")
	b, _ := os.ReadFile(path)
	b[len(b)-1] ^= 0xff
	os.WriteFile(path, b, 0o644)
	var steps []int64
	if _, err := Run(context.Background(), cfg, Options{Train: set, Test: test,
		OnStep: func(s int64, _ float64) { steps = append(steps, s) }}); err != nil {
		t.Fatal(err)
	}
	if len(steps) != 10 || steps[0] != 11 {
		t.Fatalf("after corrupting step 20 the run applied steps %v, want 11..20", steps)
	}
}

func TestLearns(t *testing.T) {
	set, test := synthetic(2048, 12, 3, 1), synthetic(512, 12, 3, 2)
	cfg := smallConfig()
	cfg.Steps = 0
	cfg.Epochs = 10
	sum, err := Run(context.Background(), cfg, Options{Train: set, Test: test})
	if err != nil {
		t.Fatal(err)
	}
	if sum.TestAccuracy < 0.9 {
		t.Fatalf("test accuracy %.3f after 10 epochs, want ≥ 0.9 on a linearly separable set", sum.TestAccuracy)
	}
}

// The data-parallel identity: the gradients of any number of shards, each
// scaled by 1/B and summed, equal the gradient of the whole batch, so one
// step with N workers gives the parameters of one single-process step.
func TestShardsSumToWholeBatch(t *testing.T) {
	set := synthetic(512, 12, 3, 1)
	cfg := smallConfig()
	cfg.Batch = 30
	single, err := NewState(cfg, set)
	if err != nil {
		t.Fatal(err)
	}
	single.ShardGradients(set, 0, 1)
	want := append([]float32(nil), single.Net.Grads...)
	single.Apply()
	for _, world := range []int{2, 3, 4, 7} {
		sum := make([]float32, len(want))
		var states []*State
		for r := 0; r < world; r++ {
			st, _ := NewState(cfg, set)
			st.ShardGradients(set, r, world)
			for i, g := range st.Net.Grads {
				sum[i] += g
			}
			states = append(states, st)
		}
		for i := range want {
			if d := math.Abs(float64(sum[i] - want[i])); d > 1e-5*math.Max(1, math.Abs(float64(want[i]))) {
				t.Fatalf("world %d: grad[%d] = %v, whole batch %v", world, i, sum[i], want[i])
			}
		}
		for _, st := range states {
			copy(st.Net.Grads, sum)
			st.Apply()
			for i, p := range st.Net.Params {
				if d := math.Abs(float64(p - single.Net.Params[i])); d > 1e-5*math.Max(1, math.Abs(float64(p))) {
					t.Fatalf("world %d: param[%d] = %v after one step, single process %v", world, i, p, single.Net.Params[i])
				}
			}
		}
	}
}

func TestFlatStateRoundTrip(t *testing.T) {
	set := synthetic(256, 12, 3, 1)
	cfg := smallConfig()
	cfg.Optimizer = "adam"
	a, err := NewState(cfg, set)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		a.ShardGradients(set, 0, 1)
		a.Apply()
	}
	cfg.WeightInit = "glorot" // different initial weights; same data order
	b, _ := NewState(cfg, set)
	if err := b.SetFlatState(a.FlatState()); err != nil {
		t.Fatal(err)
	}
	if b.Step != 3 || b.ParamHash() != a.ParamHash() {
		t.Fatalf("after SetFlatState: step %d hash equal %v", b.Step, b.ParamHash() == a.ParamHash())
	}
	a.ShardGradients(set, 0, 1)
	a.Apply()
	b.ShardGradients(set, 0, 1)
	b.Apply()
	if b.ParamHash() != a.ParamHash() {
		t.Fatal("states diverge one step after a state transfer (optimizer state not carried)")
	}
}

func TestFlagsWinOverConfigFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "run.yaml")
	os.WriteFile(path, []byte("lr: 0.2\nbatch: 64\nlayers: 784-100-10\n"), 0o644)
	cfg := DefaultConfig()
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	if err := ParseArgs(fs, []string{"--config", path, "--batch", "16"}, &cfg, nil); err != nil {
		t.Fatal(err)
	}
	if cfg.LR != 0.2 || cfg.Batch != 16 || cfg.Layers != "784-100-10" {
		t.Fatalf("got lr %v batch %d layers %s, want 0.2 16 784-100-10", cfg.LR, cfg.Batch, cfg.Layers)
	}

	jpath := filepath.Join(dir, "run.json")
	os.WriteFile(jpath, []byte(`{"lr": 0.3, "shuffle": false}`), 0o644)
	cfg = DefaultConfig()
	if err := ParseArgs(flag.NewFlagSet("t", flag.ContinueOnError), []string{"--config=" + jpath}, &cfg, nil); err != nil {
		t.Fatal(err)
	}
	if cfg.LR != 0.3 || cfg.Shuffle {
		t.Fatalf("json config: lr %v shuffle %v", cfg.LR, cfg.Shuffle)
	}

	os.WriteFile(path, []byte("learning_rate: 0.2\n"), 0o644)
	cfg = DefaultConfig()
	err := ParseArgs(flag.NewFlagSet("t", flag.ContinueOnError), []string{"--config", path}, &cfg, nil)
	if !usage.Is(err) || !strings.Contains(err.Error(), "learning_rate") {
		t.Fatalf("unknown key: %v, want a usage error naming learning_rate", err)
	}
}

func TestValidateNamesFieldValueAndFix(t *testing.T) {
	for _, tc := range []struct {
		mutate func(*Config)
		want   []string
	}{
		{func(c *Config) { c.Batch = 0 }, []string{"--batch", "0"}},
		{func(c *Config) { c.LR = -1 }, []string{"--lr", "-1"}},
		{func(c *Config) { c.Activation = "relux" }, []string{"relux", "relu"}},
		{func(c *Config) { c.Loss = "hinge" }, []string{"hinge", "cross_entropy"}},
		{func(c *Config) { c.Optimizer = "lbfgs" }, []string{"lbfgs", "adam"}},
		{func(c *Config) { c.Layers = "784-x-10" }, []string{"--layers", "784-x-10"}},
		{func(c *Config) { c.Steps, c.Epochs = 0, 0 }, []string{"--epochs"}},
		{func(c *Config) { c.WeightInit = "zeros" }, []string{"--weight-init", "zeros", "he"}},
	} {
		c := DefaultConfig()
		tc.mutate(&c)
		err := c.Validate()
		if !usage.Is(err) {
			t.Fatalf("%+v: Validate = %v, want a usage error", c, err)
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("error %q does not mention %q", err, w)
			}
		}
	}
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("default config invalid: %v", err)
	}
}

func TestLayersMustFitData(t *testing.T) {
	cfg := smallConfig()
	cfg.Layers = "10-4-3"
	_, err := Run(context.Background(), cfg, Options{Train: synthetic(64, 12, 3, 1), Test: synthetic(8, 12, 3, 1), Progress: io.Discard})
	if !usage.Is(err) || !strings.Contains(err.Error(), "12") {
		t.Fatalf("mismatched input layer: %v", err)
	}
}

// A checkpoint written by the previous release (its manifest's run spec
// names this machine's data and checkpoint paths and has no exactness) still
// resumes when the spec matches, and a spec that differs in what changes the
// result is refused with one line naming the flag and both values.
func TestResumeOlderManifest(t *testing.T) {
	set := synthetic(256, 12, 3, 1)
	cfg := smallConfig()
	cfg.Exact = false
	st, err := NewState(cfg, set)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		st.ShardGradients(set, 0, 1)
		st.Apply()
	}
	old := `{"layers":"12-16-3","activation":"relu","loss":"cross_entropy","weight_init":"he","optimizer":"momentum",` +
		`"lr":0.1,"momentum":0.9,"weight_decay":0,"schedule":"cosine","warmup_steps":0,"step_size":0,"gamma":0.1,` +
		`"clip_norm":0,"batch":32,"epochs":10,"steps":40,"seed":1,"shuffle":true,"data":"/old/machine/mnist",` +
		`"checkpoint_dir":"/old/machine/ckpt","checkpoint_every":10,"checkpoint_keep":3,"eval_every":0,"threads":1}`
	root := t.TempDir()
	var opt []checkpoint.Tensor
	for _, b := range st.Opt.State() {
		opt = append(opt, checkpoint.Tensor{Name: b.Name, Shape: []int{len(b.Data)}, Data: b.Data})
	}
	dir, err := checkpoint.Save(root, checkpoint.Manifest{Step: 3, Run: json.RawMessage(old)},
		checkpoint.ModelTensors(st.Net.Spec.Layers, st.Net.Params), opt)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := NewState(cfg, set)
	if _, err := got.RestoreDir(dir); err != nil {
		t.Fatalf("an older release's checkpoint with a matching spec: %v", err)
	}
	if got.Step != 3 || got.ParamsSHA256() != st.ParamsSHA256() {
		t.Fatalf("restored step %d hash %s, saved step 3 hash %s", got.Step, got.ParamsSHA256(), st.ParamsSHA256())
	}
	exact := cfg
	exact.Exact = true
	fresh, _ := NewState(exact, set)
	_, err = fresh.RestoreDir(dir)
	want := "was trained with --exact false, this run has --exact true; resume with --exact false or use another --checkpoint-dir"
	if !usage.Is(err) || !strings.Contains(err.Error(), want) {
		t.Fatalf("resume with --exact: %v\nwant a usage error containing %q", err, want)
	}
	other := cfg
	other.Seed = 7
	fresh, _ = NewState(other, set)
	if _, err = fresh.RestoreDir(dir); !usage.Is(err) || !strings.Contains(err.Error(), "--seed 1, this run has --seed 7") {
		t.Fatalf("resume with another seed: %v", err)
	}
}

// Evaluation converts the set a chunk at a time; the loss and accuracy are
// those of the network run over the whole set held as float32 in chunks of
// evalChunk, bit for bit, whether the set holds its features as float32 or as
// bytes, and with a partial last chunk.
func TestEvaluateInChunks(t *testing.T) {
	const n, dim = 2*evalChunk + 37, 12
	pix := make([]byte, n*dim)
	rng := rand.New(rand.NewPCG(3, 3))
	labels := make([]int32, n)
	for i := range pix {
		pix[i] = byte(rng.IntN(256))
	}
	for i := range labels {
		labels[i] = int32(rng.IntN(3))
	}
	bytesSet := &dataset.Set{Bytes: pix, ByteScale: 255, Labels: labels, N: n, Dim: dim, Classes: 3}
	x := make([]float32, n*dim)
	for i, b := range pix {
		x[i] = float32(b) / 255
	}
	floatSet := &dataset.Set{X: x, Labels: labels, N: n, Dim: dim, Classes: 3}
	st, err := NewState(smallConfig(), floatSet)
	if err != nil {
		t.Fatal(err)
	}
	lossSum, correct := st.Net.Evaluate(nn.Batch{X: x, Labels: labels, N: n}, evalChunk)
	wantLoss, wantAcc := lossSum/n, float64(correct)/n
	for name, set := range map[string]*dataset.Set{"float32": floatSet, "bytes": bytesSet} {
		if loss, acc := st.Evaluate(set); loss != wantLoss || acc != wantAcc {
			t.Errorf("%s: Evaluate = %v, %v; whole set: %v, %v", name, loss, acc, wantLoss, wantAcc)
		}
		if loss, acc := EvaluateNet(st.Net, set); loss != wantLoss || acc != wantAcc {
			t.Errorf("%s: EvaluateNet = %v, %v; whole set: %v, %v", name, loss, acc, wantLoss, wantAcc)
		}
	}
	if acc := wantAcc; acc == 0 || acc == 1 {
		t.Fatalf("accuracy %v: the check needs a network that is partly right", acc)
	}
}
