package train

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/ringtrain/ringtrain/internal/usage"
	"math"
	"math/rand/v2"
	"os"
	"time"
	"unsafe"

	"github.com/ringtrain/ringtrain/checkpoint"
	"github.com/ringtrain/ringtrain/dataset"
	"github.com/ringtrain/ringtrain/nn"
)

// State is one replica's training state: the network, the optimizer and the
// number of optimizer steps applied. Every replica of a data-parallel run
// holds an identical State after each step; single-process training is the
// same State driven with one shard that is the whole batch.
type State struct {
	Cfg   Config
	Net   *nn.Network
	Opt   nn.Optimizer
	Sched nn.Schedule
	// Step is the number of optimizer steps applied so far; the next step
	// trains global minibatch Step.
	Step int64
	// TotalSteps is where the run ends.
	TotalSteps    int64
	StepsPerEpoch int

	x       []float32
	labels  []int32
	targets []float32
}

// NewState builds the initial state for cfg and its training set: weights
// drawn from cfg.Seed, optimizer state zero, step 0. Data that does not fit
// the network (features, classes, fewer examples than a batch) is a usage
// error naming the flags.
func NewState(cfg Config, data *dataset.Set) (*State, error) {
	spec, err := cfg.NetSpec()
	if err != nil {
		return nil, err
	}
	if err := CheckData(cfg, data); err != nil {
		return nil, err
	}
	spe := dataset.StepsPerEpoch(data.N, cfg.Batch)
	net, err := nn.NewNetwork(spec)
	if err != nil {
		return nil, usage.New(err.Error())
	}
	rng := rand.New(rand.NewPCG(cfg.Seed, 0x72696e67)) // "ring"
	if err := net.Init(cfg.WeightInit, rng); err != nil {
		return nil, usage.New(err.Error())
	}
	var opt nn.Optimizer
	if cfg.Optimizer == OptimizerLM {
		if opt, err = newLMOptimizer(cfg, net); err != nil {
			return nil, err
		}
	} else if opt, err = nn.NewOptimizer(cfg.OptimizerConfig(), len(net.Params)); err != nil {
		return nil, usage.New(err.Error())
	}
	total := cfg.Steps
	if total == 0 {
		total = int64(cfg.Epochs) * int64(spe)
	}
	return &State{Cfg: cfg, Net: net, Opt: opt, Sched: cfg.LRSchedule(total), TotalSteps: total, StepsPerEpoch: spe}, nil
}

// CheckData checks that the training set fits cfg's network and batch.
func CheckData(cfg Config, data *dataset.Set) error {
	spec, err := cfg.NetSpec()
	if err != nil {
		return err
	}
	in, out := spec.Layers[0], spec.Layers[len(spec.Layers)-1]
	switch {
	case data.Dim != in:
		return usage.Errorf("--layers %s takes %d inputs but --data %s has %d features; make the first layer %d",
			cfg.Layers, in, cfg.Data, data.Dim, data.Dim)
	case cfg.Loss == "cross_entropy" && data.Classes > out:
		return usage.Errorf("--layers %s has %d outputs but --data %s has %d classes; make the last layer %d",
			cfg.Layers, out, cfg.Data, data.Classes, data.Classes)
	case dataset.StepsPerEpoch(data.N, cfg.Batch) == 0:
		return usage.Errorf("--batch %d is larger than the training set of --data %s (%d examples); use a smaller --batch",
			cfg.Batch, cfg.Data, data.N)
	}
	return checkTargets(cfg, data, out)
}

// Cursor is the data position of the next step.
func (s *State) Cursor() dataset.Cursor { return dataset.CursorAt(s.Step, s.StepsPerEpoch) }

// Epoch is the epoch of the next step.
func (s *State) Epoch() int { return s.Cursor().Epoch }

// Done reports whether the run has applied all its steps.
func (s *State) Done() bool { return s.Step >= s.TotalSteps }

// ShardGradients computes this replica's share of the gradient of global
// minibatch s.Step: rank's contiguous shard of the batch, scaled by 1/B so
// that summing Net.Grads over all world ranks gives the gradient of the mean
// loss over the whole batch. It returns the sum of the shard's losses and the
// shard's size.
func (s *State) ShardGradients(data *dataset.Set, rank, world int) (lossSum float64, n int) {
	idx := s.batchIndices(data)
	lo, hi := dataset.ShardRange(s.Cfg.Batch, rank, world)
	idx = idx[lo:hi]
	n = len(idx)
	if n == 0 {
		clear(s.Net.Grads)
		return 0, 0
	}
	lossSum = s.Net.ComputeGradients(s.gather(data, idx), float32(1/float64(s.Cfg.Batch)))
	return lossSum, n
}

// gather copies the examples idx of data into the state's scratch buffers
// (grown as needed) as a batch: inputs, labels, and the targets of a
// regression set. The batch is valid until the next gather.
func (s *State) gather(data *dataset.Set, idx []int) nn.Batch {
	n := len(idx)
	if cap(s.x) < n*data.Dim {
		s.x = make([]float32, n*data.Dim)
	}
	if cap(s.labels) < n {
		s.labels = make([]int32, n)
	}
	b := nn.Batch{X: s.x[:n*data.Dim], Labels: s.labels[:n], N: n}
	data.Gather(idx, b.X, b.Labels)
	if data.Outputs > 0 {
		if cap(s.targets) < n*data.Outputs {
			s.targets = make([]float32, n*data.Outputs)
		}
		b.Targets = s.targets[:n*data.Outputs]
		data.GatherTargets(idx, b.Targets)
	}
	return b
}

// batchIndices is the examples of global batch s.Step, in batch order.
func (s *State) batchIndices(data *dataset.Set) []int {
	c := s.Cursor()
	return dataset.BatchIndices(data.N, s.Cfg.Seed, c.Epoch, c.Step, s.Cfg.Batch, s.Cfg.Shuffle)
}

// MicroShards is the number of micro-shards of a global batch.
func (c Spec) MicroShards() int { return (c.Batch + c.MicroBatch - 1) / c.MicroBatch }

// microShard is micro-shard j of a global batch's examples idx.
func (c Spec) microShard(idx []int, j int) []int {
	m := c.MicroBatch
	return idx[j*m : min((j+1)*m, len(idx))]
}

// Apply takes one optimizer step with the (already summed) gradient in
// Net.Grads and advances Step. It returns the learning rate used.
func (s *State) Apply() float64 {
	if s.Cfg.ClipNorm > 0 {
		nn.ClipGradNorm(s.Net.Grads, s.Cfg.ClipNorm)
	}
	lr := s.Sched.LR(s.Cfg.LR, int(s.Step))
	s.Opt.Step(s.Net.Params, s.Net.Grads, lr)
	s.Step++
	return lr
}

// evalChunk is how many examples an evaluation converts and runs forward at
// a time. Changing it changes the GEMM shapes, and with them the low bits of
// the test loss.
const evalChunk = 1000

// Evaluate returns the mean loss and the accuracy on set (zeros without one).
// It converts set evalChunk examples at a time into the state's scratch
// buffers, so a byte-backed set is never held as float32 whole.
func (s *State) Evaluate(set *dataset.Set) (loss, accuracy float64) {
	if set == nil || set.N == 0 {
		return 0, 0
	}
	// The chunk's feature buffer is far larger than a training shard's; it
	// is let go afterwards rather than kept (and counted twice in the
	// collector's heap goal) until the next evaluation.
	x := s.x
	defer func() { s.x = x }()
	var lossSum float64
	var correct int
	for lo := 0; lo < set.N; lo += evalChunk {
		hi := min(lo+evalChunk, set.N)
		l, c := s.Net.Evaluate(s.slice(set, lo, hi), evalChunk)
		lossSum += l
		correct += c
	}
	return lossSum / float64(set.N), float64(correct) / float64(set.N)
}

// EvaluateNet returns net's mean loss and accuracy on set (zeros without
// one), converting it a chunk at a time as State.Evaluate does.
func EvaluateNet(net *nn.Network, set *dataset.Set) (loss, accuracy float64) {
	s := State{Net: net}
	return s.Evaluate(set)
}

// slice is the examples [lo, hi) of data as a batch: the features converted
// into the state's scratch buffer (grown as needed), the labels and targets
// views of data's. The batch is valid until the next gather or slice.
func (s *State) slice(data *dataset.Set, lo, hi int) nn.Batch {
	n := hi - lo
	if cap(s.x) < n*data.Dim {
		s.x = make([]float32, n*data.Dim)
	}
	b := nn.Batch{X: s.x[:n*data.Dim], N: n}
	data.Features(lo, hi, b.X)
	if data.Labels != nil {
		b.Labels = data.Labels[lo:hi]
	}
	if data.Targets != nil {
		b.Targets = data.Targets[lo*data.Outputs : hi*data.Outputs]
	}
	return b
}

// ParamHash is a digest of the parameters, compared across replicas.
func (s *State) ParamHash() [32]byte {
	p := s.Net.Params
	if len(p) == 0 {
		return sha256.Sum256(nil)
	}
	return sha256.Sum256(unsafe.Slice((*byte)(unsafe.Pointer(&p[0])), 4*len(p)))
}

// ParamsSHA256 is the hex SHA-256 of the parameters' little-endian float32
// bytes in layer order (each layer's weight [out, in] row-major, then its
// bias: the order of Net.Params and of the checkpoint's tensors).
func (s *State) ParamsSHA256() string { return ParamsSHA256(s.Net.Params) }

// ParamsSHA256 is the hash of a flat parameter vector (see State.ParamsSHA256).
func ParamsSHA256(p []float32) string {
	h := sha256.New()
	var b [4096]byte
	for len(p) > 0 {
		n := min(len(p), len(b)/4)
		for i, v := range p[:n] {
			binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
		}
		h.Write(b[:4*n])
		p = p[n:]
	}
	return hex.EncodeToString(h.Sum(nil))
}

// FlatState is the whole state as one float32 vector (parameters, then
// optimizer buffers, then the step count) so that a joining replica can be
// handed it with a single broadcast.
func (s *State) FlatState() []float32 {
	out := append([]float32(nil), s.Net.Params...)
	for _, b := range s.Opt.State() {
		out = append(out, b.Data...)
	}
	var step [2]float32
	binary.LittleEndian.PutUint64(unsafe.Slice((*byte)(unsafe.Pointer(&step[0])), 8), uint64(s.Step))
	return append(out, step[:]...)
}

// FlatLen is the length of FlatState.
func (s *State) FlatLen() int {
	n := len(s.Net.Params) + 2
	for _, b := range s.Opt.State() {
		n += len(b.Data)
	}
	return n
}

// SetFlatState is the inverse of FlatState.
func (s *State) SetFlatState(v []float32) error {
	if len(v) != s.FlatLen() {
		return fmt.Errorf("train: state vector has %d values, want %d", len(v), s.FlatLen())
	}
	off := copy(s.Net.Params, v)
	bufs := s.Opt.State()
	for i := range bufs {
		off += copy(bufs[i].Data, v[off:])
	}
	if err := s.Opt.SetState(bufs); err != nil {
		return err
	}
	s.Step = int64(binary.LittleEndian.Uint64(unsafe.Slice((*byte)(unsafe.Pointer(&v[off])), 8)))
	return nil
}

// Save writes a checkpoint of the state under root and prunes old ones.
// metrics, if not nil, is stored in the manifest (the curves for plots).
func (s *State) Save(root string, metrics any) (string, error) {
	run, err := json.Marshal(s.Cfg.Spec) // run-wide only: no machine path in a manifest
	if err != nil {
		return "", err
	}
	var mj json.RawMessage
	if metrics != nil {
		if mj, err = json.Marshal(metrics); err != nil {
			return "", err
		}
	}
	c := s.Cursor()
	m := checkpoint.Manifest{
		Step:         s.Step,
		Epoch:        c.Epoch,
		Cursor:       checkpoint.Cursor{Epoch: c.Epoch, Step: c.Step},
		Seed:         s.Cfg.Seed,
		Run:          run,
		ParamsSHA256: s.ParamsSHA256(),
		Metrics:      mj,
		Created:      time.Now().UTC(),
	}
	var opt []checkpoint.Tensor
	for _, b := range s.Opt.State() {
		opt = append(opt, checkpoint.Tensor{Name: b.Name, Shape: []int{len(b.Data)}, Data: b.Data})
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return "", fmt.Errorf("train: checkpoint dir: %w", err)
	}
	dir, err := checkpoint.Save(root, m, checkpoint.ModelTensors(s.Net.Spec.Layers, s.Net.Params), opt)
	if err != nil {
		return "", err
	}
	if err := checkpoint.Prune(root, s.Cfg.CheckpointKeep); err != nil {
		return dir, err
	}
	return dir, nil
}

// Restore loads parameters, optimizer state and the step from ck. The
// checkpoint must be of the same network and optimizer.
func (s *State) Restore(ck *checkpoint.Checkpoint) error {
	var saved Spec
	if err := json.Unmarshal(ck.Manifest.Run, &saved); err != nil {
		return fmt.Errorf("train: checkpoint %s: run spec: %w", ck.Dir, err)
	}
	if flag, was, now, differs := saved.ResultDiff(s.Cfg.Spec); differs {
		return usage.Errorf("checkpoint %s was trained with --%s %v, this run has --%s %v; resume with --%s %v or use another --checkpoint-dir",
			ck.Dir, flag, was, flag, now, flag, was)
	}
	if err := checkpoint.ParamsFromTensors(s.Net.Spec.Layers, ck.Model, s.Net.Params); err != nil {
		return fmt.Errorf("train: checkpoint %s: %w", ck.Dir, err)
	}
	bufs := make([]nn.NamedBuffer, len(ck.Optimizer))
	for i, t := range ck.Optimizer {
		bufs[i] = nn.NamedBuffer{Name: t.Name, Data: t.Data}
	}
	if err := s.Opt.SetState(bufs); err != nil {
		return fmt.Errorf("train: checkpoint %s: %w", ck.Dir, err)
	}
	s.Step = ck.Manifest.Step
	return nil
}

// Resume sets the starting state: the newest valid checkpoint in
// s.Cfg.CheckpointDir (corrupt ones are passed to skipped and passed over),
// else s.Cfg.Init, else s stays as built. It returns the run's curves so far
// and the checkpoint resumed from ("" when none).
func (s *State) Resume(skipped func(dir string, err error)) (hist *History, from string, err error) {
	hist = &History{}
	if s.Cfg.CheckpointDir != "" {
		ck, err := checkpoint.LatestValid(s.Cfg.CheckpointDir, skipped)
		switch {
		case err == nil:
			if err := s.Restore(ck); err != nil {
				return nil, "", err
			}
			hist.Load(ck.Manifest.Metrics)
			return hist, ck.Dir, nil
		case !errors.Is(err, checkpoint.ErrNoCheckpoint):
			return nil, "", err
		}
	}
	if s.Cfg.Init != "" {
		if err := s.LoadInit(s.Cfg.Init); err != nil {
			return nil, "", err
		}
	}
	return hist, "", nil
}

// RestoreDir restores the checkpoint in dir (checksums verified) and returns
// the run's curves stored with it.
func (s *State) RestoreDir(dir string) (*History, error) {
	ck, err := checkpoint.Load(dir)
	if err != nil {
		return nil, err
	}
	if err := s.Restore(ck); err != nil {
		return nil, err
	}
	hist := &History{}
	hist.Load(ck.Manifest.Metrics)
	return hist, nil
}

// LoadInit sets the parameters from path: a model.safetensors file or a
// checkpoint directory (its model only; the step stays 0).
func (s *State) LoadInit(path string) error {
	file := path
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		ck, err := checkpoint.Load(path)
		if err != nil {
			return fmt.Errorf("--init %q: %w", path, err)
		}
		return s.setModel(path, ck.Model)
	} else if err != nil {
		return usage.Errorf("--init %q: %v; give a model.safetensors file or a checkpoint directory", path, err)
	}
	ts, _, err := checkpoint.ReadSafetensorsFile(file)
	if err != nil {
		return fmt.Errorf("--init %q: %w", path, err)
	}
	return s.setModel(path, ts)
}

func (s *State) setModel(path string, ts []checkpoint.Tensor) error {
	if err := checkpoint.ParamsFromTensors(s.Net.Spec.Layers, ts, s.Net.Params); err != nil {
		return usage.Errorf("--init %q does not fit --layers %s: %v", path, s.Cfg.Layers, err)
	}
	return nil
}
