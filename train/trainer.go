package train

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"path/filepath"
	"time"

	"go.uber.org/zap"

	"github.com/ringtrain/ringtrain/dataset"
	"github.com/ringtrain/ringtrain/internal/usage"
	"github.com/ringtrain/ringtrain/nn"
)

// Summary is the final JSON line of a run.
type Summary struct {
	Step          int64   `json:"step"`
	Epoch         int     `json:"epoch"`
	TrainLoss     float64 `json:"train_loss"`
	TestLoss      float64 `json:"test_loss"`
	TestAccuracy  float64 `json:"test_accuracy"`
	SamplesPerSec float64 `json:"samples_per_sec"`
	Seconds       float64 `json:"seconds"`
	Workers       int     `json:"workers"`
	Checkpoint    string  `json:"checkpoint,omitempty"`
	// ParamsSHA256 is the final parameters' hash (State.ParamsSHA256):
	// runs that trained the same model have the same one.
	ParamsSHA256 string `json:"params_sha256"`
}

// Options are what a run needs besides its Config.
type Options struct {
	// Logger receives structured progress; default zap.NewNop().
	Logger *zap.Logger
	// Progress, if not nil, receives a one-line progress bar (a terminal).
	Progress io.Writer
	// Data, if not nil, is used instead of loading Config.Data.
	Train, Test *dataset.Set
	// OnStep, if not nil, is called after every step with the step's mean loss.
	OnStep func(step int64, loss float64)
}

// Run trains cfg in this process on the whole global batch each step and
// returns the final summary. It resumes from the newest valid checkpoint in
// cfg.CheckpointDir when there is one.
func Run(ctx context.Context, cfg Config, opts Options) (Summary, error) {
	log := opts.Logger
	if log == nil {
		log = zap.NewNop()
	}
	if err := cfg.Validate(); err != nil {
		return Summary{}, err
	}
	if err := cfg.CheckCheckpointDir(); err != nil {
		return Summary{}, err
	}
	nn.SetThreads(cfg.Threads)
	trainSet, testSet := opts.Train, opts.Test
	if trainSet == nil {
		var err error
		if trainSet, testSet, err = LoadData(cfg.Data); err != nil {
			return Summary{}, err
		}
	}
	st, err := NewState(cfg, trainSet)
	if err != nil {
		return Summary{}, err
	}
	hist, from, err := st.Resume(func(dir string, err error) {
		log.Warn("skipping corrupt checkpoint", zap.String("dir", dir), zap.Error(err))
	})
	if err != nil {
		return Summary{}, err
	}
	if from != "" {
		log.Info("resumed from checkpoint", zap.String("dir", from), zap.Int64("step", st.Step))
	}

	log.Info("training", zap.String("layers", cfg.Layers), zap.Int("batch", cfg.Batch),
		zap.Int64("steps", st.TotalSteps), zap.Int("steps_per_epoch", st.StepsPerEpoch), zap.Int64("start_step", st.Step))
	bar := NewProgress(opts.Progress, st.TotalSteps)
	start := time.Now()
	startStep := st.Step
	var recent lossWindow
	lastDir := ""
	step := NewStepper(st, trainSet, SingleProcess{})
	for !st.Done() {
		r, err := step.Step(ctx, false)
		if err != nil {
			return Summary{}, err
		}
		if r.Skipped {
			log.Warn("skipped a step: its reduced loss or gradient is not finite (--nonfinite skip)", zap.Int64("step", r.Step))
		} else {
			recent.add(r.Loss)
			hist.AddLoss(r.Step, r.Loss)
			if opts.OnStep != nil {
				opts.OnStep(r.Step, r.Loss)
			}
		}
		if r.Eval {
			tl, acc := st.Evaluate(testSet)
			hist.AddEval(r.Step, tl, acc)
			log.Info("eval", zap.Int64("step", r.Step), zap.Int("epoch", int((r.Step-1)/int64(st.StepsPerEpoch))),
				zap.Float64("train_loss", recent.mean()), zap.Float64("test_loss", tl), zap.Float64("test_accuracy", acc),
				zap.Float64("lr", r.LR))
		}
		bar.Update(r.Step, recent.mean())
		if cfg.CheckpointDir != "" && r.Checkpoint {
			// A checkpoint that cannot be written (a full disk) leaves the
			// previous one in place and training goes on; only the final
			// one's failure ends the run with an error.
			dir, err := st.Save(cfg.CheckpointDir, hist)
			if err != nil {
				if r.Done {
					return Summary{}, fmt.Errorf("the final checkpoint (step %d) could not be written: %w; the newest one on disk is %q", r.Step, err, lastDir)
				}
				log.Warn("checkpoint failed; training goes on and the previous checkpoint stays", zap.Int64("step", r.Step),
					zap.String("previous", lastDir), zap.Error(err))
				continue
			}
			lastDir = dir
			log.Debug("checkpoint", zap.String("dir", lastDir), zap.Int64("step", r.Step))
		}
	}
	bar.Finish()
	if lastDir != "" {
		if err := PlotHistory(*hist, filepath.Join(lastDir, PlotFile)); err != nil {
			log.Warn("plot", zap.Error(err))
		}
	}
	elapsed := time.Since(start).Seconds()
	tl, acc := st.Evaluate(testSet)
	s := Summary{
		Step: st.Step, Epoch: int((st.Step - 1) / int64(st.StepsPerEpoch)), TrainLoss: recent.mean(),
		TestLoss: tl, TestAccuracy: acc, Seconds: round(elapsed, 3), Workers: 1, Checkpoint: lastDir,
		ParamsSHA256: st.ParamsSHA256(),
	}
	if elapsed > 0 {
		s.SamplesPerSec = round(float64(st.Step-startStep)*float64(cfg.Batch)/elapsed, 1)
	}
	return s, nil
}

// LoadData loads --data; a malformed value is a usage error.
func LoadData(spec string) (trainSet, testSet *dataset.Set, err error) {
	trainSet, testSet, err = dataset.Load(spec)
	switch {
	case err == nil:
		return trainSet, testSet, nil
	case errors.Is(err, dataset.ErrBadSpec):
		return nil, nil, usage.New(err.Error())
	case errors.Is(err, dataset.ErrNotFound), errors.Is(err, dataset.ErrCorrupt), errors.Is(err, dataset.ErrMismatch),
		errors.Is(err, dataset.ErrBadCSV), errors.Is(err, fs.ErrNotExist), errors.Is(err, fs.ErrPermission):
		// Bad input, not a fault: one line naming the flag and the file.
		return nil, nil, usage.Errorf("--data %q: %v", spec, err)
	}
	return nil, nil, err
}

func round(v float64, digits int) float64 {
	p := math.Pow(10, float64(digits))
	return math.Round(v*p) / p
}

// lossWindow is the mean of the last 100 step losses.
type lossWindow struct {
	v   [100]float64
	n   int
	pos int
}

func (w *lossWindow) add(x float64) {
	w.v[w.pos] = x
	w.pos = (w.pos + 1) % len(w.v)
	if w.n < len(w.v) {
		w.n++
	}
}

func (w *lossWindow) mean() float64 {
	if w.n == 0 {
		return math.NaN()
	}
	s := 0.0
	for i := 0; i < w.n; i++ {
		s += w.v[i]
	}
	return s / float64(w.n)
}
