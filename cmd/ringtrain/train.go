package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"github.com/ringtrain/ringtrain/internal/usage"
	"io"
	"runtime"

	"go.uber.org/zap"

	"github.com/ringtrain/ringtrain/checkpoint"
	"github.com/ringtrain/ringtrain/internal/version"
	"github.com/ringtrain/ringtrain/nn"
	"github.com/ringtrain/ringtrain/train"
)

func init() {
	register("train", "train in this process (single worker)", runTrain)
	register("eval", "evaluate a checkpoint on the test set", runEval)
	register("version", "print version, commit and build date", runVersion)
}

// logFlags are the logging flags every long-running command shares.
type logFlags struct{ level string }

func (l *logFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&l.level, "log-level", "", "log level: debug, info, warn, error (default info; warn on a terminal)")
}

// logger builds the command's logger; on a terminal it defaults to warn so
// that the progress bar stays readable.
func (l *logFlags) logger(w io.Writer) (*zap.Logger, error) {
	level := l.level
	if level == "" {
		level = "info"
		if isTerminal(w) {
			level = "warn"
		}
	}
	return newLogger(w, level)
}

func runTrain(ctx context.Context, e *env, args []string) error {
	fs := e.newFlagSet("Trains a network in this process; the global batch is one worker's batch.")
	cfg := train.DefaultConfig()
	var lf logFlags
	if err := train.ParseArgs(fs, args, &cfg, lf.register); err != nil {
		return err
	}
	log, err := lf.logger(e.stderr)
	if err != nil {
		return err
	}
	defer log.Sync()
	opts := train.Options{Logger: log.Named("train")}
	if isTerminal(e.stderr) {
		opts.Progress = e.stderr
	}
	sum, err := train.Run(ctx, cfg, opts)
	if err != nil {
		return err
	}
	return json.NewEncoder(e.stdout).Encode(sum)
}

func runEval(ctx context.Context, e *env, args []string) error {
	fs := e.newFlagSet("Evaluates a checkpoint directory on its run's test set and prints one JSON line.")
	dir := fs.String("checkpoint", "", "checkpoint directory (a step-NNNNNNNN folder), or a checkpoint root to use its newest valid one")
	data := fs.String("data", "", "test data (default: the checkpoint's --data)")
	if err := usage.ParseFlags(fs, args); err != nil {
		return err
	}
	if *dir == "" {
		return usage.New("--checkpoint is required, e.g. --checkpoint ckpt/step-00004680")
	}
	ck, err := checkpoint.Load(*dir)
	if err != nil {
		// A root folder of checkpoints: take the newest valid one.
		if ck2, err2 := checkpoint.LatestValid(*dir, func(d string, err error) {
			fmt.Fprintf(e.stderr, "warning: skipping corrupt checkpoint %s: %v\n", d, err)
		}); err2 == nil {
			ck, err = ck2, nil
		}
	}
	if err != nil {
		return fmt.Errorf("--checkpoint %q: %w", *dir, err)
	}
	// The manifest holds the run's spec; the data is this machine's (older
	// manifests also named theirs, which is the default then).
	cfg := train.DefaultConfig()
	if err := json.Unmarshal(ck.Manifest.Run, &cfg); err != nil {
		return fmt.Errorf("checkpoint %s: run spec: %w", ck.Dir, err)
	}
	if *data != "" {
		cfg.Data = *data
	}
	spec, err := cfg.NetSpec()
	if err != nil {
		return err
	}
	net, err := nn.NewNetwork(spec)
	if err != nil {
		return err
	}
	if err := checkpoint.ParamsFromTensors(spec.Layers, ck.Model, net.Params); err != nil {
		return fmt.Errorf("checkpoint %s: %w", ck.Dir, err)
	}
	_, test, err := train.LoadData(cfg.Data)
	if err != nil {
		return err
	}
	if test.Dim != spec.Layers[0] {
		return usage.Errorf("--data %s has %d features but the checkpoint's network takes %d", cfg.Data, test.Dim, spec.Layers[0])
	}
	loss, accuracy := train.EvaluateNet(net, test)
	return json.NewEncoder(e.stdout).Encode(map[string]any{
		"checkpoint": ck.Dir, "step": ck.Manifest.Step, "epoch": ck.Manifest.Epoch, "params_sha256": train.ParamsSHA256(net.Params),
		"test_loss": loss, "test_accuracy": accuracy,
	})
}

func runVersion(ctx context.Context, e *env, args []string) error {
	fs := e.newFlagSet("Prints the version, commit and build date, and the matrix multiply (backend and kernel) and GOARCH: with the threads and the data, what can change the bits of exact training.")
	if err := usage.ParseFlags(fs, args); err != nil {
		return err
	}
	fmt.Fprintln(e.stdout, version.String())
	fmt.Fprintf(e.stdout, "gemm: %s (%s), GOARCH %s\n", nn.BLASBackend(), nn.BLASKernel(), runtime.GOARCH)
	fixed := nn.FixedKernel()
	if fixed == "" {
		fixed = "none: a GEMM per micro-shard, then a conversion"
	}
	fmt.Fprintf(e.stdout, "exact fixed-point kernel: %s\n", fixed)
	return nil
}
