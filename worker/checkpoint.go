package worker

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/ringtrain/ringtrain/cluster"
	"github.com/ringtrain/ringtrain/dataset"
	"github.com/ringtrain/ringtrain/train"
)

// checkpointStore is where a checkpoint is reported once its files are
// durable (etcd's checkpoints/<worker>, which the coordinators publish as
// the run's checkpoint/latest).
type checkpointStore interface {
	ReportCheckpoint(ctx context.Context, worker string, ref cluster.CheckpointRef) error
}

// checkpointDeps is everything a checkpointer uses.
type checkpointDeps struct {
	root    string       // the checkpoint root on this machine
	cfg     train.Config // the state's configuration (to build the snapshot)
	data    *dataset.Set // the training set the state was built for
	store   checkpointStore
	who     string // this worker's ID: it reports under it
	log     *zap.Logger
	metrics *Metrics
}

// checkpointer takes a cheap snapshot of the state on the training path and
// persists it in the background; the checkpoint is published in etcd only
// after its files are durable. One write is in flight at a time; the
// checkpointer owns that goroutine and Wait joins it.
//
// The snapshot is the one copy of the state it keeps: the write reads it
// while training changes the live state, and the next snapshot overwrites
// it only after that write is done. It holds the parameters and the
// optimizer's buffers, copied straight from the live state: no gradient
// buffer and no flat intermediate vector.
type checkpointer struct {
	d    checkpointDeps
	snap *train.State // reused copy of the state being written
	hist train.History
	busy sync.WaitGroup
}

func newCheckpointer(d checkpointDeps) *checkpointer { return &checkpointer{d: d} }

// Snapshot copies st and writes it in the background. If the previous write
// is still running it waits for it first.
func (c *checkpointer) Snapshot(gen uint64, st *train.State, hist *train.History) {
	c.busy.Wait()
	if err := c.copyState(st, hist); err != nil {
		c.d.log.Warn("checkpoint snapshot", zap.Error(err))
		return
	}
	c.busy.Add(1)
	go func() {
		defer c.busy.Done()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if _, err := c.persist(ctx, gen); err != nil {
			c.d.log.Warn("checkpoint", zap.Error(err))
		}
	}()
}

// SaveNow writes st synchronously (the final checkpoint).
func (c *checkpointer) SaveNow(ctx context.Context, gen uint64, st *train.State, hist *train.History) (string, error) {
	c.busy.Wait()
	if err := c.copyState(st, hist); err != nil {
		return "", err
	}
	return c.persist(ctx, gen)
}

// Wait blocks until no write is in flight.
func (c *checkpointer) Wait() { c.busy.Wait() }

// copyState copies st and hist into the snapshot. The caller has waited for
// the previous write.
func (c *checkpointer) copyState(st *train.State, hist *train.History) error {
	if c.snap == nil {
		s, err := train.NewState(c.d.cfg, c.d.data)
		if err != nil {
			return err
		}
		s.Net.Grads = nil // a snapshot is written, never trained
		c.snap = s
	}
	if len(c.snap.Net.Params) != len(st.Net.Params) {
		return fmt.Errorf("checkpoint snapshot: the state has %d parameters, the snapshot %d", len(st.Net.Params), len(c.snap.Net.Params))
	}
	copy(c.snap.Net.Params, st.Net.Params)
	if err := c.snap.Opt.SetState(st.Opt.State()); err != nil {
		return fmt.Errorf("checkpoint snapshot: %w", err)
	}
	c.snap.Step = st.Step
	loss, eval := c.hist.Loss[:0], c.hist.Eval[:0] // the previous write's, done with
	c.hist = *hist
	c.hist.Loss = append(loss, hist.Loss...)
	c.hist.Eval = append(eval, hist.Eval...)
	return nil
}

func (c *checkpointer) persist(ctx context.Context, gen uint64) (string, error) {
	dir, err := c.snap.Save(c.d.root, &c.hist)
	if err != nil {
		return "", fmt.Errorf("checkpoint step %d: %w", c.snap.Step, err)
	}
	c.d.metrics.CheckpointTime.SetToCurrentTime()
	// The pointer names the directory relative to the checkpoint root, so
	// every machine resolves it against its own mount.
	ref := cluster.CheckpointRef{Step: c.snap.Step, Dir: filepath.Base(dir), Gen: gen, Time: time.Now().UTC(),
		ParamsSHA256: c.snap.ParamsSHA256()}
	if err := c.d.store.ReportCheckpoint(ctx, c.d.who, ref); err != nil {
		// The files are durable; a restart finds them on disk even if etcd missed the report.
		c.d.log.Warn("report checkpoint", zap.String("dir", dir), zap.Error(err))
		return dir, nil
	}
	c.d.log.Info("checkpoint", zap.String("dir", dir), zap.Int64("step", ref.Step))
	return dir, nil
}
