package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/ringtrain/ringtrain/checkpoint"
	"github.com/ringtrain/ringtrain/internal/usage"
	"github.com/ringtrain/ringtrain/train"
)

func init() {
	register("plot", "write a PNG of the loss and accuracy curves of a checkpoint", runPlot)
}

func runPlot(ctx context.Context, e *env, args []string) error {
	fs := e.newFlagSet("Writes a PNG of the training loss, test loss and test accuracy stored in a checkpoint's manifest, and prints its path.")
	dir := fs.String("checkpoint", "", "checkpoint directory (a step-NNNNNNNN folder), or a checkpoint root to use its newest valid one")
	out := fs.String("out", "", "PNG to write (default: "+train.PlotFile+" in the --checkpoint directory)")
	if err := usage.ParseFlags(fs, args); err != nil {
		return err
	}
	if *dir == "" {
		return usage.New("--checkpoint is required, e.g. --checkpoint ckpt or --checkpoint ckpt/step-00004680")
	}
	ck, err := loadCheckpointForPlot(*dir, func(d string, err error) {
		fmt.Fprintf(e.stderr, "warning: skipping corrupt checkpoint %s: %v\n", d, err)
	})
	if err != nil {
		return err
	}
	var h train.History
	h.Load(ck.Manifest.Metrics)
	if len(h.Loss) == 0 && len(h.Eval) == 0 {
		return fmt.Errorf("checkpoint %s (step %d) holds no loss or accuracy history; plot a checkpoint written after the first steps", ck.Dir, ck.Manifest.Step)
	}
	path := *out
	if path == "" {
		path = filepath.Join(*dir, train.PlotFile)
	}
	if err := train.PlotHistory(h, path); err != nil {
		return err
	}
	fmt.Fprintln(e.stdout, path)
	return nil
}

// loadCheckpointForPlot loads dir as a step directory or, when it holds no
// manifest, as a root of step directories (its newest valid one).
func loadCheckpointForPlot(dir string, warn func(string, error)) (*checkpoint.Checkpoint, error) {
	if st, err := os.Stat(dir); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, usage.Errorf("--checkpoint %s does not exist", dir)
		}
		return nil, fmt.Errorf("--checkpoint %s: %w", dir, err)
	} else if !st.IsDir() {
		return nil, usage.Errorf("--checkpoint %s is a file; give its directory", dir)
	}
	if _, err := os.Stat(filepath.Join(dir, checkpoint.ManifestFile)); err == nil {
		ck, err := checkpoint.Load(dir)
		if err != nil {
			return nil, fmt.Errorf("--checkpoint %s: %w", dir, err)
		}
		return ck, nil
	}
	ck, err := checkpoint.LatestValid(dir, warn)
	if err != nil {
		return nil, fmt.Errorf("--checkpoint %s: %w", dir, err)
	}
	return ck, nil
}
