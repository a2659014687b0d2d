package worker

import (
	"context"
	"fmt"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/ringtrain/ringtrain/coordinator"
	"github.com/ringtrain/ringtrain/train"
)

// checkpointer takes a cheap snapshot of the state on the training path and
// persists it in the background; the checkpoint is published in etcd only
// after its files are durable. One write is in flight at a time.
type checkpointer struct {
	w    *Worker
	snap *train.State // reused copy of the state being written
	hist train.History
	busy sync.WaitGroup
}

func newCheckpointer(w *Worker) *checkpointer {
	return &checkpointer{w: w}
}

// Snapshot copies the state and writes it in the background. If the
// previous write is still running it waits for it first.
func (c *checkpointer) Snapshot(gen uint64, hist *train.History) {
	c.busy.Wait()
	if err := c.copyState(hist); err != nil {
		c.w.log.Warn("checkpoint snapshot", zap.Error(err))
		return
	}
	c.busy.Add(1)
	go func() {
		defer c.busy.Done()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if _, err := c.persist(ctx, gen); err != nil {
			c.w.log.Warn("checkpoint", zap.Error(err))
		}
	}()
}

// SaveNow writes the current state synchronously (the final checkpoint).
func (c *checkpointer) SaveNow(ctx context.Context, gen uint64, hist *train.History) (string, error) {
	c.busy.Wait()
	if err := c.copyState(hist); err != nil {
		return "", err
	}
	return c.persist(ctx, gen)
}

// Wait blocks until no write is in flight.
func (c *checkpointer) Wait() { c.busy.Wait() }

func (c *checkpointer) copyState(hist *train.History) error {
	st := c.w.st
	if c.snap == nil {
		s, err := train.NewState(st.Cfg, c.w.train.N)
		if err != nil {
			return err
		}
		c.snap = s
	}
	if err := c.snap.SetFlatState(st.FlatState()); err != nil {
		return err
	}
	c.hist = *hist
	c.hist.Loss = append([]train.Point(nil), hist.Loss...)
	c.hist.Eval = append([]train.EvalPoint(nil), hist.Eval...)
	return nil
}

func (c *checkpointer) persist(ctx context.Context, gen uint64) (string, error) {
	dir, err := c.snap.Save(c.snap.Cfg.CheckpointDir, &c.hist)
	if err != nil {
		return "", fmt.Errorf("checkpoint step %d: %w", c.snap.Step, err)
	}
	c.w.metrics.CheckpointTime.SetToCurrentTime()
	ref := coordinator.CheckpointRef{Step: c.snap.Step, Dir: dir, Gen: gen, Time: time.Now().UTC()}
	won, err := c.w.run.PublishCheckpoint(ctx, ref)
	if err != nil {
		// The files are durable; a restart finds them on disk even if etcd missed the pointer.
		c.w.log.Warn("publish checkpoint", zap.String("dir", dir), zap.Error(err))
		return dir, nil
	}
	if won {
		c.w.run.AddEvent(ctx, coordinator.Event{Time: ref.Time, Kind: "checkpoint", Who: c.w.cfg.ID, Gen: gen, Step: ref.Step, Detail: dir})
	}
	c.w.log.Info("checkpoint", zap.String("dir", dir), zap.Int64("step", ref.Step), zap.Bool("published", won))
	return dir, nil
}
