package cluster

import (
	"context"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Follow keeps a consumer in step with a key (or a prefix) across etcd
// outages: it reads the current state (onSync), then watches from the next
// revision (onEvent). When the watch breaks it resumes from the revision
// after the last event seen; when that revision was compacted away it reads
// the whole state again (onSync). Errors are retried with backoff until ctx
// ends. A callback returning false stops Follow. Follow returns when ctx
// ends or a callback stops it. key is a full key (see Client.Key).
func (c *Client) Follow(ctx context.Context, key string, prefix bool,
	onSync func(resp *clientv3.GetResponse) bool, onEvent func(ev *clientv3.Event) bool) {
	var getOpts, watchOpts []clientv3.OpOption
	if prefix {
		getOpts = append(getOpts, clientv3.WithPrefix())
		watchOpts = append(watchOpts, clientv3.WithPrefix())
	}
	bo := Backoff{Min: 50 * time.Millisecond, Max: 2 * time.Second}
	next := int64(0) // revision to watch from; 0: read the state first
	for ctx.Err() == nil {
		if next == 0 {
			gctx, cancel := c.Bounded(ctx)
			resp, err := c.cli.Get(gctx, key, getOpts...)
			cancel()
			if err != nil {
				c.log.Debug("follow: read failed; retrying", zap.String("key", key), zap.Error(err))
				if !bo.Wait(ctx) {
					return
				}
				continue
			}
			if !onSync(resp) {
				return
			}
			next = resp.Header.Revision + 1
		}
		wctx, cancel := context.WithCancel(ctx)
		wch := c.cli.Watch(wctx, key, append(watchOpts, clientv3.WithRev(next))...)
		for wr := range wch {
			if wr.CompactRevision != 0 {
				c.log.Debug("follow: revision compacted; rereading", zap.String("key", key), zap.Int64("rev", next))
				next = 0
				break
			}
			if err := wr.Err(); err != nil {
				c.log.Debug("follow: watch broke; resuming", zap.String("key", key), zap.Int64("rev", next), zap.Error(err))
				break
			}
			for _, ev := range wr.Events {
				if !onEvent(ev) {
					cancel()
					return
				}
				if ev.Kv.ModRevision >= next {
					next = ev.Kv.ModRevision + 1
				}
			}
			bo.Reset()
		}
		cancel()
		if !bo.Wait(ctx) {
			return
		}
	}
}

// Backoff is a retry delay that doubles from Min up to Max; Reset starts
// again from Min. Not safe for concurrent use.
type Backoff struct {
	Min, Max time.Duration
	cur      time.Duration
}

// Wait sleeps the current delay, doubling it for next time; false if ctx
// ended first.
func (b *Backoff) Wait(ctx context.Context) bool {
	if b.cur < b.Min {
		b.cur = b.Min
	}
	t := time.NewTimer(b.cur)
	defer t.Stop()
	b.cur = min(2*b.cur, b.Max)
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// Reset makes the next Wait the shortest again.
func (b *Backoff) Reset() { b.cur = 0 }
