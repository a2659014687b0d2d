package coordinator

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/ringtrain/ringtrain/cluster"
	"github.com/ringtrain/ringtrain/train"
)

// Workers may write only their own keys (cluster.WorkerKeys); what they
// report there, the coordinators turn into the run's keys:
//
//	checkpoints/<id>   → checkpoint/latest (compare-and-swap: the highest step wins) and a checkpoint event
//	finished/<id>      → done (the first summary stays)
//	workers/<id>       → fingerprint, from the first registration that states one (exact runs)
//
// Every coordinator promotes, leader or standby: each write is idempotent
// and monotone, so two coordinators agree, and a failover leaves no gap in
// which a report waits for a new leader.

// promote follows the workers' reports until ctx ends.
func (l *loop) promote(ctx context.Context, exact bool) {
	done := make(chan struct{}, 3)
	go func() { l.followReports(ctx, cluster.KeyCheckpoints, l.promoteCheckpoint); done <- struct{}{} }()
	go func() { l.followReports(ctx, cluster.KeyFinished, l.promoteFinished); done <- struct{}{} }()
	n := 2
	if exact {
		n++
		go func() { l.followReports(ctx, cluster.KeyWorkers, l.promoteFingerprint); done <- struct{}{} }()
	}
	for range n {
		<-done
	}
}

// followReports calls f with the worker ID and value of every key under
// name (a prefix), present and future; a failed write is retried with
// backoff until it succeeds or ctx ends.
func (l *loop) followReports(ctx context.Context, name string, f func(ctx context.Context, id string, v []byte) error) {
	pfx := l.client.Key(name)
	handle := func(key, v []byte) bool {
		id := strings.TrimPrefix(string(key), pfx)
		bo := cluster.Backoff{Min: 100 * time.Millisecond, Max: 2 * time.Second}
		for {
			err := f(ctx, id, v)
			if err == nil {
				return true
			}
			l.c.log.Warn("cannot take a worker's report; retrying", zap.String("key", name+id), zap.Error(err))
			if !bo.Wait(ctx) {
				return false
			}
		}
	}
	l.client.Follow(ctx, pfx, true,
		func(resp *clientv3.GetResponse) bool {
			for _, kv := range resp.Kvs {
				if !handle(kv.Key, kv.Value) {
					return false
				}
			}
			return true
		},
		func(ev *clientv3.Event) bool {
			if ev.Type != clientv3.EventTypePut {
				return true
			}
			return handle(ev.Kv.Key, ev.Kv.Value)
		})
}

// errSkip: a report that cannot be decoded is logged and dropped, never retried.
var errSkip = errors.New("skip")

func decodeReport(log *zap.Logger, name, id string, v []byte, dst any) error {
	if err := json.Unmarshal(v, dst); err != nil {
		log.Warn("skipping an undecodable report", zap.String("key", name+id), zap.Error(err))
		return errSkip
	}
	return nil
}

// promoteCheckpoint points checkpoint/latest at worker id's reported
// checkpoint unless it already names a later step.
func (l *loop) promoteCheckpoint(ctx context.Context, id string, v []byte) error {
	var ref cluster.CheckpointRef
	if decodeReport(l.c.log, cluster.KeyCheckpoints, id, v, &ref) != nil {
		return nil
	}
	won, err := l.client.PublishCheckpoint(ctx, ref)
	if err != nil {
		return err
	}
	if won {
		l.c.log.Info("checkpoint published", zap.String("worker", id), zap.Int64("step", ref.Step), zap.String("dir", ref.Name()))
		select {
		case l.events <- cluster.Event{Time: ref.Time, Kind: "checkpoint", Who: id, Gen: ref.Gen, Step: ref.Step, Detail: ref.Name()}:
		default:
			l.c.log.Warn("event log writer behind; dropping an event", zap.String("kind", "checkpoint"), zap.String("who", id))
		}
	}
	return nil
}

// promoteFinished marks the run done with worker id's final summary.
func (l *loop) promoteFinished(ctx context.Context, id string, v []byte) error {
	var sum train.Summary
	if decodeReport(l.c.log, cluster.KeyFinished, id, v, &sum) != nil {
		return nil
	}
	stored, err := l.client.MarkDone(ctx, sum)
	if err != nil {
		return err
	}
	if stored {
		l.c.log.Info("run done", zap.String("worker", id), zap.Int64("step", sum.Step), zap.String("params_sha256", sum.ParamsSHA256))
	}
	return nil
}

// promoteFingerprint stores the fingerprint of worker id's registration
// as the run's, unless the run has one.
func (l *loop) promoteFingerprint(ctx context.Context, id string, v []byte) error {
	var w cluster.WorkerInfo
	if decodeReport(l.c.log, cluster.KeyWorkers, id, v, &w) != nil || w.Fingerprint == (train.Fingerprint{}) {
		return nil
	}
	run, err := l.client.PutFingerprintIfAbsent(ctx, w.Fingerprint)
	if err != nil {
		return err
	}
	if run == w.Fingerprint {
		l.c.log.Debug("the run's fingerprint", zap.String("from", id), zap.String("fingerprint", cluster.Marshal(run)))
	}
	return nil
}
