package train

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"github.com/ringtrain/ringtrain/internal/usage"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/ringtrain/ringtrain/nn"
)

// Spec is the run-wide part of a run's configuration: everything that
// determines what is trained and how, and nothing about any one machine. It
// is written to etcd once, when a run starts, and recorded in every checkpoint
// manifest, so two runs with equal Specs on equal data compute the same steps.
type Spec struct {
	// Layers are the dense layer sizes from the input, e.g. "784-512-512-10".
	Layers string `json:"layers" yaml:"layers"`
	// Activation is the hidden-layer activation (relu, tanh, logistic, ...).
	Activation string `json:"activation" yaml:"activation"`
	// Loss is cross_entropy (integer labels), bce or mse.
	Loss string `json:"loss" yaml:"loss"`
	// WeightInit is the initialiser: he or glorot.
	WeightInit string `json:"weight_init" yaml:"weight_init"`
	// Optimizer is sgd, momentum, nesterov, adam, adamw or lm
	// (Levenberg–Marquardt, with loss mse; see lm.go).
	Optimizer string `json:"optimizer" yaml:"optimizer"`
	// LR is the base learning rate.
	LR float64 `json:"lr" yaml:"lr"`
	// Momentum is the momentum factor of momentum and nesterov.
	Momentum float64 `json:"momentum" yaml:"momentum"`
	// WeightDecay is L2 (decoupled for adamw).
	WeightDecay float64 `json:"weight_decay" yaml:"weight_decay"`
	// Schedule is the learning-rate schedule: constant, step or cosine.
	Schedule string `json:"schedule" yaml:"schedule"`
	// WarmupSteps ramps the learning rate linearly over the first steps.
	WarmupSteps int `json:"warmup_steps" yaml:"warmup_steps"`
	// StepSize and Gamma parameterise the step schedule.
	StepSize int     `json:"step_size" yaml:"step_size"`
	Gamma    float64 `json:"gamma" yaml:"gamma"`
	// ClipNorm clips the global gradient L2 norm; 0 disables clipping.
	ClipNorm float64 `json:"clip_norm" yaml:"clip_norm"`
	// Batch is the global minibatch size, split across all workers.
	Batch int `json:"batch" yaml:"batch"`
	// Epochs to train; ignored when Steps > 0.
	Epochs int `json:"epochs" yaml:"epochs"`
	// Steps is the total number of optimizer steps; 0 means Epochs full epochs.
	Steps int64 `json:"steps" yaml:"steps"`
	// Seed fixes initialisation and the data order.
	Seed uint64 `json:"seed" yaml:"seed"`
	// Shuffle draws each epoch's order from (seed, epoch); false keeps file order.
	Shuffle bool `json:"shuffle" yaml:"shuffle"`
	// CheckpointEvery is the number of steps between checkpoints (0: only at the end).
	CheckpointEvery int `json:"checkpoint_every" yaml:"checkpoint_every"`
	// CheckpointKeep is how many checkpoints to keep (the newest).
	CheckpointKeep int `json:"checkpoint_keep" yaml:"checkpoint_keep"`
	// EvalEvery evaluates on the test set every this many steps (and at each epoch end); 0: at epoch ends only.
	EvalEvery int `json:"eval_every" yaml:"eval_every"`
	// Exact makes every step's result independent of the number of workers,
	// the ring order and faults: the global batch is cut into micro-shards of
	// MicroBatch examples, and their gradients are summed exactly (see
	// exact.go). False: each rank's shard is one float32 sum, and the result
	// depends on the worker count in the last bits.
	Exact bool `json:"exact" yaml:"exact"`
	// MicroBatch is the micro-shard size of exact training.
	MicroBatch int `json:"micro_batch" yaml:"micro_batch"`
	// BucketMiB caps the gradient buckets a step reduces while backward
	// goes on: layers from the output back are grouped until a bucket holds
	// at least this many MiB, and each bucket's all-reduce starts as soon as
	// its layers' gradients are final (exact training: their integers). 0:
	// one collective for the whole gradient after backward. Every rank must
	// use the same value (it shapes the collectives), so it is run-wide; an
	// exact run's result does not depend on it.
	BucketMiB float64 `json:"bucket_mib" yaml:"bucket_mib"`
	// NonFinite is what a step whose reduced loss or gradient holds a NaN
	// or an infinity does: "stop" ends the run with ErrNonFinite, "skip"
	// leaves the parameters and optimizer state as they were and moves on
	// to the next batch (every rank sees the same reduced values, so every
	// rank skips the same steps). Empty (older specs): stop.
	NonFinite string `json:"nonfinite,omitempty" yaml:"nonfinite,omitempty"`
	// LMMu is Levenberg–Marquardt's initial damping μ (--optimizer lm; see
	// lm.go). The LM fields are ignored by the other optimizers.
	LMMu float64 `json:"lm_mu" yaml:"lm_mu"`
	// LMMuUp multiplies μ after a rejected trial step.
	LMMuUp float64 `json:"lm_mu_up" yaml:"lm_mu_up"`
	// LMMuDown multiplies μ after an accepted step.
	LMMuDown float64 `json:"lm_mu_down" yaml:"lm_mu_down"`
	// LMTrials is how many damped solves one step tries before it leaves
	// the parameters unchanged (with μ raised) and moves on.
	LMTrials int `json:"lm_trials" yaml:"lm_trials"`
	// LMMaxParams is the largest network --optimizer lm accepts: each step
	// sums and solves a P×P system (P² float64s, O(P³) per solve).
	LMMaxParams int `json:"lm_max_params" yaml:"lm_max_params"`
}

// ResultDiff reports the first field in which s and o differ that changes
// what is trained (everything but the checkpoint and evaluation cadence;
// the micro-shard size only in exact mode), as its flag name and both
// values.
func (s Spec) ResultDiff(o Spec) (flag string, a, b any, differs bool) {
	va, vb := reflect.ValueOf(s), reflect.ValueOf(o)
	t := va.Type()
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		switch name {
		case "checkpoint_every", "checkpoint_keep", "eval_every", "lm_max_params", "bucket_mib":
			continue
		case "lm_mu", "lm_mu_up", "lm_mu_down", "lm_trials":
			if s.Optimizer != OptimizerLM && o.Optimizer != OptimizerLM {
				continue // inert, and absent (zero) in older specs
			}
		case "micro_batch":
			if !s.Exact && !o.Exact {
				continue
			}
		case "nonfinite":
			if x, y := s.nonFinite(), o.nonFinite(); x != y {
				return "nonfinite", x, y, true
			}
			continue
		}
		if x, y := va.Field(i).Interface(), vb.Field(i).Interface(); x != y {
			return strings.ReplaceAll(name, "_", "-"), x, y, true
		}
	}
	return "", nil, nil, false
}

// Non-finite step policies.
const (
	NonFiniteStop = "stop"
	NonFiniteSkip = "skip"
)

// nonFinite is the policy, "stop" for an older spec without one.
func (s Spec) nonFinite() string {
	if s.NonFinite == "" {
		return NonFiniteStop
	}
	return s.NonFinite
}

// Local is the machine-local part of a configuration: where this process
// finds its data and writes its checkpoints, and how many threads it uses.
// It never leaves the machine (not in etcd, not in a manifest).
type Local struct {
	// Data is "mnist", a directory of MNIST IDX files, "csv:TRAIN,TEST" or
	// "sine:N" (a generated regression set).
	Data string `json:"data" yaml:"data"`
	// Init is a model.safetensors (or checkpoint directory) to start from.
	Init string `json:"init,omitempty" yaml:"init,omitempty"`
	// CheckpointDir is the checkpoint root on this machine (empty: no checkpoints).
	CheckpointDir string `json:"checkpoint_dir,omitempty" yaml:"checkpoint_dir,omitempty"`
	// Threads is the BLAS thread count per process.
	Threads int `json:"threads" yaml:"threads"`
}

// Config is what one process trains with: the run's Spec and this machine's
// Local settings. Flags and config files fill both with flat keys.
type Config struct {
	Spec  `yaml:",inline"`
	Local `yaml:",inline"`
}

// DefaultConfig is the documented default: a 784-512-512-10 ReLU network on
// MNIST that reaches ≥ 98% test accuracy within 10 epochs.
func DefaultConfig() Config {
	return Config{Spec: Spec{
		Layers:          "784-512-512-10",
		Activation:      "relu",
		Loss:            "cross_entropy",
		WeightInit:      "he",
		Optimizer:       "momentum",
		LR:              0.05,
		Momentum:        0.9,
		Schedule:        "cosine",
		Gamma:           0.1,
		Batch:           128,
		Epochs:          10,
		Seed:            1,
		Shuffle:         true,
		CheckpointEvery: 500,
		CheckpointKeep:  3,
		Exact:           true,
		MicroBatch:      DefaultMicroBatch,
		BucketMiB:       DefaultBucketMiB,
		NonFinite:       NonFiniteStop,
		LMMu:            DefaultLMMu,
		LMMuUp:          DefaultLMMuUp,
		LMMuDown:        DefaultLMMuDown,
		LMTrials:        DefaultLMTrials,
		LMMaxParams:     DefaultLMMaxParams,
	}, Local: Local{
		Data:    "mnist",
		Threads: 1,
	}}
}

// NetSpec is the network this spec describes.
func (c Spec) NetSpec() (nn.Spec, error) {
	layers, err := nn.ParseLayers(c.Layers)
	if err != nil {
		return nn.Spec{}, usage.Errorf("--layers %q: %v", c.Layers, err)
	}
	s := nn.Spec{Layers: layers, Activation: c.Activation, Loss: c.Loss}
	if err := s.Validate(); err != nil {
		return nn.Spec{}, usage.New(err.Error())
	}
	return s, nil
}

// OptimizerConfig is the optimizer this spec describes.
func (c Spec) OptimizerConfig() nn.OptimizerConfig {
	o := nn.OptimizerConfig{Name: c.Optimizer, WeightDecay: c.WeightDecay}
	if c.Optimizer == "momentum" || c.Optimizer == "nesterov" {
		o.Momentum = c.Momentum // the others have no momentum term (adam uses its betas)
	}
	return o
}

// LRSchedule is the learning-rate schedule over totalSteps.
func (c Spec) LRSchedule(totalSteps int64) nn.Schedule {
	return nn.Schedule{Kind: c.Schedule, WarmupSteps: c.WarmupSteps, StepSize: c.StepSize,
		Gamma: c.Gamma, TotalSteps: int(totalSteps)}
}

// Validate checks the spec and the machine-local settings.
func (c Config) Validate() error {
	if err := c.Spec.Validate(); err != nil {
		return err
	}
	return c.Local.Validate()
}

// Validate checks every field on its own and the rules between fields. Each
// error names the flag, the value and what to do instead.
func (c Spec) Validate() error {
	if c.Optimizer == OptimizerLM && c.Loss != "mse" { // before the network, which may not suit that loss either
		return c.validateLM()
	}
	if _, err := c.NetSpec(); err != nil {
		return err
	}
	switch c.WeightInit {
	case "he", "glorot":
	default:
		return usage.Errorf("--weight-init %q unknown; use he or glorot", c.WeightInit)
	}
	switch c.Optimizer {
	case "sgd", "momentum", "nesterov", "adam", "adamw":
		if err := c.OptimizerConfig().Validate(); err != nil {
			return usage.New(err.Error())
		}
	case OptimizerLM:
		if err := c.validateLM(); err != nil {
			return err
		}
	default:
		return usage.Errorf("--optimizer %q unknown; use one of sgd, momentum, nesterov, adam, adamw, lm", c.Optimizer)
	}
	if !(c.LR > 0) {
		return usage.Errorf("--lr %v must be positive, e.g. --lr 0.05", c.LR)
	}
	if c.Momentum < 0 || c.Momentum >= 1 {
		return usage.Errorf("--momentum %v must be in [0, 1)", c.Momentum)
	}
	if c.WeightDecay < 0 {
		return usage.Errorf("--weight-decay %v must not be negative", c.WeightDecay)
	}
	if err := c.LRSchedule(int64(c.WarmupSteps) + 1).Validate(); err != nil { // the run's length is checked by NewState
		return usage.New(err.Error())
	}
	if c.WarmupSteps < 0 {
		return usage.Errorf("--warmup-steps %d must not be negative", c.WarmupSteps)
	}
	if c.ClipNorm < 0 {
		return usage.Errorf("--clip-norm %v must not be negative (0 disables clipping)", c.ClipNorm)
	}
	if c.Batch <= 0 {
		return usage.Errorf("--batch %d must be positive, e.g. --batch 128", c.Batch)
	}
	if c.Steps < 0 {
		return usage.Errorf("--steps %d must not be negative", c.Steps)
	}
	if c.Steps == 0 && c.Epochs <= 0 {
		return usage.Errorf("--epochs %d must be positive when --steps is 0", c.Epochs)
	}
	if c.CheckpointEvery < 0 {
		return usage.Errorf("--checkpoint-every %d must not be negative (0 checkpoints only at the end)", c.CheckpointEvery)
	}
	if c.CheckpointKeep < 1 {
		return usage.Errorf("--checkpoint-keep %d must be at least 1", c.CheckpointKeep)
	}
	if c.Exact && (c.MicroBatch < 1 || c.MicroBatch > c.Batch) {
		return usage.Errorf("--micro-batch %d must be within [1, --batch %d]; e.g. --micro-batch %d", c.MicroBatch, c.Batch, min(DefaultMicroBatch, c.Batch))
	}
	if c.EvalEvery < 0 {
		return usage.Errorf("--eval-every %d must not be negative", c.EvalEvery)
	}
	if n := c.nonFinite(); n != NonFiniteStop && n != NonFiniteSkip {
		return usage.Errorf("--nonfinite %q: want stop (end the run) or skip (drop the step and go on)", c.NonFinite)
	}
	if !(c.BucketMiB >= 0 && c.BucketMiB <= 1024) {
		return usage.Errorf("--bucket-mib %v must be within [0, 1024] (0: one all-reduce after backward); e.g. --bucket-mib %v", c.BucketMiB, DefaultBucketMiB)
	}
	return nil
}

// Validate checks the machine-local settings.
func (c Local) Validate() error {
	if c.Threads < 1 {
		return usage.Errorf("--threads %d must be at least 1", c.Threads)
	}
	if c.Data == "" {
		return usage.Errorf("--data is empty; use mnist, a directory of MNIST files, or csv:TRAIN.csv,TEST.csv")
	}
	return nil
}

// CheckCheckpointDir makes sure the checkpoint root exists and takes new
// files, before any training: a root that cannot be written is one usage
// error at start, not a failure at the first checkpoint. No root: nothing
// to check.
func (c Local) CheckCheckpointDir() error {
	if c.CheckpointDir == "" {
		return nil
	}
	if err := os.MkdirAll(c.CheckpointDir, 0o755); err != nil {
		return usage.Errorf("--checkpoint-dir %q cannot be created: %v; give a directory this user can write", c.CheckpointDir, err)
	}
	f, err := os.CreateTemp(c.CheckpointDir, ".write-check-*")
	if err != nil {
		return usage.Errorf("--checkpoint-dir %q is not writable: %v; give a directory this user can write", c.CheckpointDir, err)
	}
	f.Close()
	return os.Remove(f.Name())
}

// RegisterFlags binds every field of c to a flag of fs; the current values of
// c are the flags' defaults.
func RegisterFlags(fs *flag.FlagSet, c *Config) {
	fs.StringVar(&c.Layers, "layers", c.Layers, "dense layer sizes from the input, e.g. 784-512-512-10")
	fs.StringVar(&c.Activation, "activation", c.Activation, "hidden activation: identity, logistic, tanh, relu, leaky_relu, softmax, swish, mish, gelu")
	fs.StringVar(&c.Loss, "loss", c.Loss, "loss: cross_entropy, bce or mse")
	fs.StringVar(&c.WeightInit, "weight-init", c.WeightInit, "weight initialiser: he or glorot")
	fs.StringVar(&c.Optimizer, "optimizer", c.Optimizer, "optimizer: sgd, momentum, nesterov, adam, adamw, or lm (Levenberg-Marquardt: --loss mse, small networks)")
	fs.Float64Var(&c.LR, "lr", c.LR, "base learning rate")
	fs.Float64Var(&c.Momentum, "momentum", c.Momentum, "momentum factor (momentum, nesterov)")
	fs.Float64Var(&c.WeightDecay, "weight-decay", c.WeightDecay, "weight decay (decoupled for adamw)")
	fs.StringVar(&c.Schedule, "schedule", c.Schedule, "learning-rate schedule: constant, step or cosine")
	fs.IntVar(&c.WarmupSteps, "warmup-steps", c.WarmupSteps, "linear learning-rate warm-up steps")
	fs.IntVar(&c.StepSize, "step-size", c.StepSize, "steps between decays of the step schedule")
	fs.Float64Var(&c.Gamma, "gamma", c.Gamma, "decay factor of the step schedule")
	fs.Float64Var(&c.ClipNorm, "clip-norm", c.ClipNorm, "clip the gradient L2 norm to this (0: off)")
	fs.IntVar(&c.Batch, "batch", c.Batch, "global minibatch size (split across workers)")
	fs.IntVar(&c.Epochs, "epochs", c.Epochs, "epochs to train (when --steps is 0)")
	fs.Int64Var(&c.Steps, "steps", c.Steps, "optimizer steps to train (0: --epochs full epochs)")
	fs.Uint64Var(&c.Seed, "seed", c.Seed, "seed for initialisation and data order")
	fs.BoolVar(&c.Shuffle, "shuffle", c.Shuffle, "shuffle each epoch from (seed, epoch); false keeps file order")
	fs.StringVar(&c.Data, "data", c.Data, "training data: mnist, a directory of MNIST IDX files, csv:TRAIN.csv,TEST.csv, or sine:N (generated regression)")
	fs.StringVar(&c.Init, "init", c.Init, "model.safetensors or checkpoint directory to start from")
	fs.StringVar(&c.CheckpointDir, "checkpoint-dir", c.CheckpointDir, "directory for checkpoints (empty: none)")
	fs.IntVar(&c.CheckpointEvery, "checkpoint-every", c.CheckpointEvery, "checkpoint every N steps (0: only at the end)")
	fs.IntVar(&c.CheckpointKeep, "checkpoint-keep", c.CheckpointKeep, "checkpoints to keep")
	fs.IntVar(&c.EvalEvery, "eval-every", c.EvalEvery, "evaluate every N steps (0: at epoch ends)")
	fs.IntVar(&c.Threads, "threads", c.Threads, "BLAS threads per process")
	fs.BoolVar(&c.Exact, "exact", c.Exact, "exact training: the same parameters, bit for bit, at any worker count and through faults (false: plain float32 sums)")
	fs.IntVar(&c.MicroBatch, "micro-batch", c.MicroBatch, "micro-shard size of exact training (examples); each worker computes whole micro-shards")
	fs.StringVar(&c.NonFinite, "nonfinite", c.NonFinite, "a step whose reduced loss or gradient has a NaN or infinity: stop (end the run) or skip (leave the model as it was, go on)")
	fs.Float64Var(&c.BucketMiB, "bucket-mib", c.BucketMiB, "gradient bucket size (MiB): each bucket's all-reduce starts while backward goes on; 0: one all-reduce after backward")
	fs.Float64Var(&c.LMMu, "lm-mu", c.LMMu, "initial damping μ of --optimizer lm")
	fs.Float64Var(&c.LMMuUp, "lm-mu-up", c.LMMuUp, "factor on μ after a rejected trial step (lm)")
	fs.Float64Var(&c.LMMuDown, "lm-mu-down", c.LMMuDown, "factor on μ after an accepted step (lm)")
	fs.IntVar(&c.LMTrials, "lm-trials", c.LMTrials, "damped solves one lm step tries before it leaves the parameters unchanged")
	fs.IntVar(&c.LMMaxParams, "lm-max-params", c.LMMaxParams, "largest network --optimizer lm accepts (parameters; each step solves a P×P system)")
}

// LoadFile reads a YAML or JSON config file over c. Unknown keys are errors.
func LoadFile(path string, c *Config) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return usage.Errorf("--config %q: %v", path, err)
	}
	if strings.EqualFold(filepath.Ext(path), ".json") {
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(c); err != nil {
			return usage.Errorf("--config %q: %v; keys are the flag names with _ for -, e.g. checkpoint_dir", path, err)
		}
		return nil
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) { // EOF: an empty file
		return usage.Errorf("--config %q: %s%s; keys are the flag names with _ for -, e.g. checkpoint_dir", path, keysAt(b, err), oneLine(err))
	}
	return nil
}

// keysAt names the top-level keys on the lines a YAML error points at
// ("line N: ..."), so that a value of the wrong type is reported with its
// key: "key lr: line 1: cannot unmarshal ...".
func keysAt(b []byte, err error) string {
	var doc yaml.Node
	if yaml.Unmarshal(b, &doc) != nil || len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		return ""
	}
	var keys []string
	m := doc.Content[0].Content
	for i := 0; i+1 < len(m); i += 2 {
		if strings.Contains(err.Error(), fmt.Sprintf("line %d:", m[i+1].Line)) {
			keys = append(keys, m[i].Value)
		}
	}
	if len(keys) == 0 {
		return ""
	}
	return "key " + strings.Join(keys, ", ") + ": "
}

// oneLine is err's message on one line: a YAML decoder lists each bad key
// on a line of its own.
func oneLine(err error) string {
	fields := strings.Fields(err.Error())
	return strings.Join(fields, " ")
}

// ParseArgs builds a Config from defaults, then the file named by --config
// (if any), then the flags given in args: flags win over the file. extra, if
// not nil, registers the command's own flags on the same FlagSet.
func ParseArgs(fs *flag.FlagSet, args []string, c *Config, extra func(*flag.FlagSet)) error {
	// First pass: find --config without applying anything.
	probe := flag.NewFlagSet(fs.Name(), flag.ContinueOnError)
	probe.SetOutput(io.Discard)
	var scratch Config = *c
	RegisterFlags(probe, &scratch)
	if extra != nil {
		extra(probe)
	}
	var cfgPath string
	probe.StringVar(&cfgPath, "config", "", "")
	if err := probe.Parse(args); err == nil && cfgPath != "" {
		if err := LoadFile(cfgPath, c); err != nil {
			return err
		}
	}
	RegisterFlags(fs, c)
	if extra != nil {
		extra(fs)
	}
	fs.String("config", "", "YAML or JSON config file with the same keys (flags win)")
	return usage.ParseFlags(fs, args)
}
