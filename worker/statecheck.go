package worker

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"unsafe"
)

// ErrBadState: a rank refused the state another rank sent it (at a
// generation's start): a wrong length, an impossible step or non-finite
// values. The generation fails and the refusing rank keeps its own state.
var ErrBadState = errors.New("worker: state refused")

// StateError names the sender of a refused state.
type StateError struct {
	Rank   int    // the sender's rank
	ID     string // its worker ID
	Reason string
}

func (e *StateError) Error() string {
	return fmt.Sprintf("%v: from rank %d (%s): %s", ErrBadState, e.Rank, e.ID, e.Reason)
}

func (e *StateError) Unwrap() error { return ErrBadState }

// stateLimits is what a received state vector (train.State.FlatState:
// parameters, optimizer state, then the step in two slots) may say.
type stateLimits struct {
	Len    int   // the vector's length here (train.State.FlatLen)
	Stated int64 // the step the sender stated when the ranks agreed
	Total  int64 // the run's last step
	// Reach is the furthest step the run can have trained to (see reach);
	// negative: no bound.
	Reach int64
}

// checkState refuses a state vector that breaks l; the error says why, and
// the caller names the sender.
func checkState(v []float32, l stateLimits) error {
	if len(v) != l.Len {
		return fmt.Errorf("%d values, want %d (another network or optimizer)", len(v), l.Len)
	}
	if len(v) < 2 {
		return fmt.Errorf("%d values hold no step", len(v))
	}
	step := stateStep(v)
	switch {
	case step < 0:
		return fmt.Errorf("negative step %d", step)
	case step > l.Total:
		return fmt.Errorf("step %d is beyond the run's last step %d", step, l.Total)
	case step != l.Stated:
		return fmt.Errorf("step %d, but it stated step %d when the ranks agreed", step, l.Stated)
	case l.Reach >= 0 && step > l.Reach:
		return fmt.Errorf("step %d is beyond step %d, the furthest the run can have trained past its newest checkpoint", step, l.Reach)
	}
	for i, x := range v[:len(v)-2] {
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			return fmt.Errorf("value %d of %d is %v (parameters, then optimizer state)", i, len(v)-2, x)
		}
	}
	return nil
}

// stateStep decodes the step in the last two slots of a state vector, as
// train.State.SetFlatState does.
func stateStep(v []float32) int64 {
	return int64(binary.LittleEndian.Uint64(unsafe.Slice((*byte)(unsafe.Pointer(&v[len(v)-2])), 8)))
}

// reach is the furthest step a run whose checkpoints come every `every`
// steps can have trained to, given the newest published checkpoint's step,
// the newest published progress and this rank's own step (each 0 when
// unknown): rank 0 writes one checkpoint at a time, so the run trains at
// most two checkpoint intervals past the newest published one, and never
// past the progress it published by more than that either. -1 (no bound)
// without a cadence.
func reach(every int, checkpoint, progress, own int64) int64 {
	if every <= 0 {
		return -1
	}
	return max(checkpoint, progress, own) + 2*int64(every)
}

// checkReceived checks the state vector v that rank src sent this rank,
// before it replaces this rank's state; an error is a *StateError.
func (w *Worker) checkReceived(ctx context.Context, cur *gen, src int, v []float32) error {
	l := stateLimits{Len: w.st.FlatLen(), Total: w.st.TotalSteps, Reach: -1, Stated: -1}
	if src < len(cur.steps) {
		l.Stated = cur.steps[src]
	}
	if every := w.st.Cfg.CheckpointEvery; every > 0 && w.st.Cfg.CheckpointDir != "" {
		rctx, cancel := w.run.Bounded(ctx)
		ref, _, err1 := w.run.LatestCheckpoint(rctx)
		p, _, err2 := w.run.Progress(rctx)
		cancel()
		if err1 == nil && err2 == nil { // unknown: no bound rather than a wrong one
			l.Reach = reach(every, ref.Step, p.Step, w.st.Step)
		}
	}
	if err := checkState(v, l); err != nil {
		return &StateError{Rank: src, ID: cur.g.Members[src].ID, Reason: err.Error()}
	}
	return nil
}
