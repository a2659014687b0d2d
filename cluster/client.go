package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	grpcbackoff "google.golang.org/grpc/backoff"

	"github.com/ringtrain/ringtrain/train"
)

// DefaultRequestTimeout bounds every single etcd request a Client makes.
const DefaultRequestTimeout = 5 * time.Second

// MaxEvents is how many events a run keeps in etcd (the newest).
const MaxEvents = 200

// Client is one run's view of etcd: the API workers, coordinators and
// `ringtrain status` use. Every etcd request is bounded by a timeout; the
// watches retry with backoff across etcd outages. A Client is safe for
// concurrent use and owns nothing but its goroutines' contexts: closing the
// *clientv3.Client is the caller's job (after the Client's users stop).
type Client struct {
	cli     *clientv3.Client
	run     string
	log     *zap.Logger
	timeout time.Duration
}

// EtcdClientConfig is the etcd client configuration ringtrain processes
// use: bounded dialing, keep-alive pings that notice a dead connection in a
// few seconds, and reconnect backoff capped at 2 s so that watches resume
// soon after an etcd outage ends.
func EtcdClientConfig(endpoints []string, log *zap.Logger) clientv3.Config {
	if log == nil {
		log = zap.NewNop()
	}
	return clientv3.Config{
		Endpoints:            endpoints,
		DialTimeout:          5 * time.Second,
		DialKeepAliveTime:    5 * time.Second,
		DialKeepAliveTimeout: 2 * time.Second,
		Logger:               log.WithOptions(zap.IncreaseLevel(zap.ErrorLevel)),
		DialOptions: []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           grpcbackoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 2 * time.Second},
			MinConnectTimeout: 2 * time.Second,
		})},
	}
}

// NewClient is a Client for run over cli; log may be nil.
func NewClient(cli *clientv3.Client, run string, log *zap.Logger) *Client {
	if log == nil {
		log = zap.NewNop()
	}
	return &Client{cli: cli, run: run, log: log.With(zap.String("run", run)), timeout: DefaultRequestTimeout}
}

// Run is the run's name.
func (c *Client) Run() string { return c.run }

// Etcd is the underlying etcd client.
func (c *Client) Etcd() *clientv3.Client { return c.cli }

// Key is the full etcd key of name in the client's run.
func (c *Client) Key(name string) string { return Key(c.run, name) }

// Bounded is ctx limited by the client's request timeout
// (DefaultRequestTimeout): every single etcd request runs under one.
func (c *Client) Bounded(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, c.timeout)
}

// get reads one key and decodes it into v; false when it does not exist.
func (c *Client) get(ctx context.Context, name string, v any) (bool, error) {
	ctx, cancel := c.Bounded(ctx)
	defer cancel()
	resp, err := c.cli.Get(ctx, c.Key(name))
	if err != nil {
		return false, fmt.Errorf("cluster: read %s: %w", name, err)
	}
	if len(resp.Kvs) == 0 {
		return false, nil
	}
	if err := json.Unmarshal(resp.Kvs[0].Value, v); err != nil {
		return false, fmt.Errorf("cluster: decode %s: %w", name, err)
	}
	return true, nil
}

func (c *Client) put(ctx context.Context, name string, v any) error {
	ctx, cancel := c.Bounded(ctx)
	defer cancel()
	if _, err := c.cli.Put(ctx, c.Key(name), Marshal(v)); err != nil {
		return fmt.Errorf("cluster: write %s: %w", name, err)
	}
	return nil
}

// PutSpecIfAbsent stores spec unless the run already has one, and returns
// the stored spec (the existing one wins).
func (c *Client) PutSpecIfAbsent(ctx context.Context, spec RunSpec) (RunSpec, error) {
	return putIfAbsent(ctx, c, KeySpec, spec)
}

// PutFingerprintIfAbsent stores fp as the run's fingerprint unless the run
// already has one, and returns the stored one (the existing one wins): a
// coordinator sets it from the first registration of an exact run that
// states one, and each worker compares its own with the stored one.
func (c *Client) PutFingerprintIfAbsent(ctx context.Context, fp train.Fingerprint) (train.Fingerprint, error) {
	return putIfAbsent(ctx, c, KeyFingerprint, fp)
}

// Fingerprint is the run's fingerprint; false when none was stored (a run
// in float mode, or no worker yet).
func (c *Client) Fingerprint(ctx context.Context) (train.Fingerprint, bool, error) {
	var fp train.Fingerprint
	ok, err := c.get(ctx, KeyFingerprint, &fp)
	return fp, ok, err
}

// WaitFingerprint blocks until the run has a fingerprint and returns it; it
// retries across etcd outages and returns early only when ctx ends.
func (c *Client) WaitFingerprint(ctx context.Context) (train.Fingerprint, error) {
	return waitKey[train.Fingerprint](ctx, c, KeyFingerprint)
}

// putIfAbsent stores v under name unless the key exists, in one
// transaction, and returns the stored value (the existing one wins).
func putIfAbsent[T any](ctx context.Context, c *Client, name string, v T) (T, error) {
	ctx, cancel := c.Bounded(ctx)
	defer cancel()
	var zero T
	k := c.Key(name)
	resp, err := c.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(k), "=", 0)).
		Then(clientv3.OpPut(k, Marshal(v))).
		Else(clientv3.OpGet(k)).
		Commit()
	if err != nil {
		return zero, fmt.Errorf("cluster: write %s: %w", name, err)
	}
	if resp.Succeeded {
		return v, nil
	}
	var stored T
	kvs := resp.Responses[0].GetResponseRange().Kvs
	if len(kvs) == 0 {
		return zero, fmt.Errorf("cluster: write %s: lost a race with a delete; retry", name)
	}
	if err := json.Unmarshal(kvs[0].Value, &stored); err != nil {
		return zero, fmt.Errorf("cluster: decode %s: %w", name, err)
	}
	return stored, nil
}

// Spec is the run's spec, or ErrNoSpec.
func (c *Client) Spec(ctx context.Context) (RunSpec, error) {
	var s RunSpec
	ok, err := c.get(ctx, KeySpec, &s)
	if err != nil {
		return RunSpec{}, err
	}
	if !ok {
		return RunSpec{}, fmt.Errorf("%w: run %q (start a coordinator with --run %s)", ErrNoSpec, c.run, c.run)
	}
	return s, nil
}

// WaitSpec blocks until the run has a spec and returns it; it retries across
// etcd outages and returns early only when ctx ends.
func (c *Client) WaitSpec(ctx context.Context) (RunSpec, error) {
	return waitKey[RunSpec](ctx, c, KeySpec)
}

// waitKey blocks until key name exists and returns its value decoded.
func waitKey[T any](ctx context.Context, c *Client, name string) (T, error) {
	var (
		v      T
		found  bool
		decErr error
	)
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	take := func(b []byte) bool {
		if err := json.Unmarshal(b, &v); err != nil {
			decErr = fmt.Errorf("cluster: decode %s: %w", name, err)
		}
		found = true
		return false
	}
	c.Follow(wctx, c.Key(name), false,
		func(resp *clientv3.GetResponse) bool {
			if len(resp.Kvs) > 0 {
				return take(resp.Kvs[0].Value)
			}
			return true
		},
		func(ev *clientv3.Event) bool {
			if ev.Type == clientv3.EventTypePut {
				return take(ev.Kv.Value)
			}
			return true
		})
	var zero T
	if decErr != nil {
		return zero, decErr
	}
	if !found {
		return zero, fmt.Errorf("cluster: waiting for the %s of run %q: %w", name, c.run, ctx.Err())
	}
	return v, nil
}

// Generation is the run's current ring; false when none was published yet.
func (c *Client) Generation(ctx context.Context) (Generation, bool, error) {
	var g Generation
	ok, err := c.get(ctx, KeyGeneration, &g)
	return g, ok, err
}

// PutGeneration writes g as the run's generation if guard holds: the
// leading coordinator's election guard, so that a deposed leader cannot
// write. It reports whether guard held (and g was written).
func (c *Client) PutGeneration(ctx context.Context, g Generation, guard clientv3.Cmp) (bool, error) {
	ctx, cancel := c.Bounded(ctx)
	defer cancel()
	resp, err := c.cli.Txn(ctx).If(guard).Then(clientv3.OpPut(c.Key(KeyGeneration), Marshal(g))).Commit()
	if err != nil {
		return false, fmt.Errorf("cluster: write generation: %w", err)
	}
	return resp.Succeeded, nil
}

// WatchGeneration sends the current generation first (if there is one), then
// every new one, in order and each once. It survives etcd being unreachable
// (retrying with backoff and resuming from the last revision seen) and is
// closed when ctx ends. The channel is unbuffered: a slow reader delays the
// watch, never loses a generation.
func (c *Client) WatchGeneration(ctx context.Context) <-chan Generation {
	out := make(chan Generation)
	go func() {
		defer close(out)
		var last int64 // ModRevision of the last generation sent
		send := func(v []byte, rev int64) bool {
			if rev <= last {
				return true
			}
			var g Generation
			if err := json.Unmarshal(v, &g); err != nil {
				c.log.Warn("skipping an undecodable generation", zap.Error(err))
				return true
			}
			last = rev
			select {
			case out <- g:
				return true
			case <-ctx.Done():
				return false
			}
		}
		c.Follow(ctx, c.Key(KeyGeneration), false,
			func(resp *clientv3.GetResponse) bool {
				if len(resp.Kvs) == 0 {
					return true
				}
				return send(resp.Kvs[0].Value, resp.Kvs[0].ModRevision)
			},
			func(ev *clientv3.Event) bool {
				if ev.Type != clientv3.EventTypePut {
					return true
				}
				return send(ev.Kv.Value, ev.Kv.ModRevision)
			})
	}()
	return out
}

// PublishProgress records the ring's position as worker saw it, in its own
// progress/<worker> (rank 0 calls it about twice a second).
func (c *Client) PublishProgress(ctx context.Context, worker string, p Progress) error {
	if worker == "" {
		return fmt.Errorf("cluster: publish progress: empty worker ID")
	}
	return c.put(ctx, KeyProgress+worker, p)
}

// Progress is the most advanced progress any worker published (the highest
// generation, then step), older releases' single progress key included;
// false when none.
func (c *Client) Progress(ctx context.Context) (Progress, bool, error) {
	ctx, cancel := c.Bounded(ctx)
	defer cancel()
	// One range: "progress" itself and every "progress/<id>".
	resp, err := c.cli.Get(ctx, c.Key(keyOldProgress), clientv3.WithPrefix())
	if err != nil {
		return Progress{}, false, fmt.Errorf("cluster: read progress: %w", err)
	}
	var best Progress
	found := false
	for _, kv := range resp.Kvs {
		var p Progress
		if err := json.Unmarshal(kv.Value, &p); err != nil {
			c.log.Warn("skipping undecodable progress", zap.ByteString("key", kv.Key), zap.Error(err))
			continue
		}
		if !found || p.Gen > best.Gen || (p.Gen == best.Gen && (p.Step > best.Step || (p.Step == best.Step && p.Time.After(best.Time)))) {
			best, found = p, true
		}
	}
	return best, found, nil
}

// ReportCheckpoint records, in worker's own checkpoints/<worker>, that it
// made the checkpoint ref durable (ref.Dir is stored as ref.Name()). The
// coordinators publish it as the run's checkpoint/latest (PublishCheckpoint)
// unless that already names a later step. Report only after the files are
// durable.
func (c *Client) ReportCheckpoint(ctx context.Context, worker string, ref CheckpointRef) error {
	if worker == "" {
		return fmt.Errorf("cluster: report a checkpoint: empty worker ID")
	}
	ref.Dir = ref.Name()
	return c.put(ctx, KeyCheckpoints+worker, ref)
}

// ReportFinished records, in worker's own finished/<worker>, that it ended
// the run (as rank 0, its final checkpoint durable) with sum; the
// coordinators then mark the run done with it (MarkDone).
func (c *Client) ReportFinished(ctx context.Context, worker string, sum train.Summary) error {
	if worker == "" {
		return fmt.Errorf("cluster: report the run finished: empty worker ID")
	}
	return c.put(ctx, KeyFinished+worker, sum)
}

// PublishCheckpoint points checkpoint/latest at ref unless it already points
// at a step at or after ref.Step (compare-and-swap on the key's revision, so
// a slow writer of an older checkpoint never overwrites a newer one). It
// reports whether ref won. Coordinators call it with the workers' reports
// (ReportCheckpoint), which come only after the files are durable.
// ref.Dir is stored as ref.Name(), the directory's name under the
// checkpoint root, never as a path on this machine.
func (c *Client) PublishCheckpoint(ctx context.Context, ref CheckpointRef) (bool, error) {
	ref.Dir = ref.Name()
	k := c.Key(KeyCheckpoint)
	for range 16 {
		won, retry, err := c.tryPublishCheckpoint(ctx, k, ref)
		if err != nil || !retry {
			return won, err
		}
	}
	return false, fmt.Errorf("%w: publishing checkpoint step %d", ErrContention, ref.Step)
}

func (c *Client) tryPublishCheckpoint(ctx context.Context, k string, ref CheckpointRef) (won, retry bool, err error) {
	ctx, cancel := c.Bounded(ctx)
	defer cancel()
	resp, err := c.cli.Get(ctx, k)
	if err != nil {
		return false, false, fmt.Errorf("cluster: read checkpoint: %w", err)
	}
	var modRev int64
	if len(resp.Kvs) > 0 {
		var cur CheckpointRef
		if err := json.Unmarshal(resp.Kvs[0].Value, &cur); err == nil && cur.Step >= ref.Step {
			return false, false, nil
		}
		modRev = resp.Kvs[0].ModRevision // an undecodable value is replaced
	}
	tr, err := c.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(k), "=", modRev)).
		Then(clientv3.OpPut(k, Marshal(ref))).
		Commit()
	if err != nil {
		return false, false, fmt.Errorf("cluster: publish checkpoint step %d: %w", ref.Step, err)
	}
	return tr.Succeeded, !tr.Succeeded, nil
}

// ReportFailure tells the leader that generation f.Gen failed on
// f.Reporter (Time defaults to now). A report about an older generation is
// ignored; reports from several members of one generation make one new
// generation.
func (c *Client) ReportFailure(ctx context.Context, f Failure) error {
	if f.Reporter == "" {
		return fmt.Errorf("cluster: report a failure: empty reporter")
	}
	if f.Time.IsZero() {
		f.Time = time.Now()
	}
	return c.put(ctx, KeyFailures+f.Reporter, f)
}

// LatestCheckpoint is the newest published checkpoint; false when none.
// A worker resumes from ref.Path(its --checkpoint-dir).
func (c *Client) LatestCheckpoint(ctx context.Context) (CheckpointRef, bool, error) {
	var r CheckpointRef
	ok, err := c.get(ctx, KeyCheckpoint, &r)
	return r, ok, err
}

// eventKey is events/<unix nanos, 20 digits> so that keys sort by time.
func eventKey(t time.Time) string { return fmt.Sprintf("%s%020d", KeyEvents, t.UnixNano()) }

// AddEvent appends ev (Time defaults to now) to the run's event log and
// trims the log to the newest MaxEvents.
func (c *Client) AddEvent(ctx context.Context, ev Event) error {
	if ev.Time.IsZero() {
		ev.Time = time.Now()
	}
	ctx, cancel := c.Bounded(ctx)
	defer cancel()
	// Create-if-absent, nudging the key by a nanosecond on a collision, so
	// two events never overwrite each other.
	t := ev.Time
	for i := 0; ; i++ {
		k := c.Key(eventKey(t))
		resp, err := c.cli.Txn(ctx).
			If(clientv3.Compare(clientv3.CreateRevision(k), "=", 0)).
			Then(clientv3.OpPut(k, Marshal(ev))).
			Commit()
		if err != nil {
			return fmt.Errorf("cluster: record %s event: %w", ev.Kind, err)
		}
		if resp.Succeeded {
			break
		}
		if i == 8 {
			return fmt.Errorf("%w: recording %s event", ErrContention, ev.Kind)
		}
		t = t.Add(time.Nanosecond)
	}
	return c.trimEvents(ctx)
}

// trimEvents deletes the oldest events beyond MaxEvents, in batches (only
// once there are MaxEvents/10 too many) to keep AddEvent cheap.
func (c *Client) trimEvents(ctx context.Context) error {
	pfx := c.Key(KeyEvents)
	resp, err := c.cli.Get(ctx, pfx, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return fmt.Errorf("cluster: count events: %w", err)
	}
	extra := resp.Count - MaxEvents
	if extra < MaxEvents/10 {
		return nil
	}
	old, err := c.cli.Get(ctx, pfx, clientv3.WithPrefix(), clientv3.WithKeysOnly(),
		clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend), clientv3.WithLimit(extra))
	if err != nil {
		return fmt.Errorf("cluster: list old events: %w", err)
	}
	if len(old.Kvs) == 0 {
		return nil
	}
	last := string(old.Kvs[len(old.Kvs)-1].Key)
	if _, err := c.cli.Delete(ctx, pfx, clientv3.WithRange(last+"\x00")); err != nil {
		return fmt.Errorf("cluster: trim events: %w", err)
	}
	return nil
}

// Events are the newest n events (all kept when n <= 0), oldest first.
func (c *Client) Events(ctx context.Context, n int) ([]Event, error) {
	ctx, cancel := c.Bounded(ctx)
	defer cancel()
	opts := []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortDescend)}
	if n > 0 {
		opts = append(opts, clientv3.WithLimit(int64(n)))
	}
	resp, err := c.cli.Get(ctx, c.Key(KeyEvents), opts...)
	if err != nil {
		return nil, fmt.Errorf("cluster: read events: %w", err)
	}
	out := make([]Event, 0, len(resp.Kvs))
	for i := len(resp.Kvs) - 1; i >= 0; i-- {
		var ev Event
		if err := json.Unmarshal(resp.Kvs[i].Value, &ev); err != nil {
			continue
		}
		out = append(out, ev)
	}
	return out, nil
}

// MarkDone records that the run finished with sum unless it is already
// marked done (the first summary stays); coordinators and workers then exit.
// It reports whether sum was the one stored.
func (c *Client) MarkDone(ctx context.Context, sum train.Summary) (bool, error) {
	stored, err := putIfAbsent(ctx, c, KeyDone, sum)
	if err != nil {
		return false, err
	}
	return stored == sum, nil
}

// Done is the run's final summary; false while it runs.
func (c *Client) Done(ctx context.Context) (train.Summary, bool, error) {
	var s train.Summary
	ok, err := c.get(ctx, KeyDone, &s)
	return s, ok, err
}

// WatchDone sends the run's summary once the run is done (at once if it
// already is) and is then closed; it is also closed when ctx ends. It
// survives etcd outages like WatchGeneration.
func (c *Client) WatchDone(ctx context.Context) <-chan train.Summary {
	out := make(chan train.Summary, 1) // one value, never blocks the watch
	go func() {
		defer close(out)
		take := func(v []byte) bool {
			var s train.Summary
			if err := json.Unmarshal(v, &s); err != nil {
				c.log.Warn("undecodable done summary", zap.Error(err))
			}
			out <- s
			return false
		}
		c.Follow(ctx, c.Key(KeyDone), false,
			func(resp *clientv3.GetResponse) bool {
				if len(resp.Kvs) == 0 {
					return true
				}
				return take(resp.Kvs[0].Value)
			},
			func(ev *clientv3.Event) bool {
				if ev.Type != clientv3.EventTypePut {
					return true
				}
				return take(ev.Kv.Value)
			})
	}()
	return out
}

// list decodes every value under a prefix, in key order.
func list[T any](ctx context.Context, c *Client, name string) ([]T, error) {
	ctx, cancel := c.Bounded(ctx)
	defer cancel()
	resp, err := c.cli.Get(ctx, c.Key(name), clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
	if err != nil {
		return nil, fmt.Errorf("cluster: list %s: %w", strings.TrimSuffix(name, "/"), err)
	}
	out := make([]T, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var v T
		if err := json.Unmarshal(kv.Value, &v); err != nil {
			c.log.Warn("skipping an undecodable registration", zap.ByteString("key", kv.Key), zap.Error(err))
			continue
		}
		out = append(out, v)
	}
	return out, nil
}

// Workers are the registered workers, by ID.
func (c *Client) Workers(ctx context.Context) ([]WorkerInfo, error) {
	return list[WorkerInfo](ctx, c, KeyWorkers)
}

// Coordinators are the registered coordinators, by ID.
func (c *Client) Coordinators(ctx context.Context) ([]CoordinatorInfo, error) {
	return list[CoordinatorInfo](ctx, c, KeyCoordinators)
}

// Leader is the ID of the coordinator that currently leads; false when none.
func (c *Client) Leader(ctx context.Context) (string, bool, error) {
	ctx, cancel := c.Bounded(ctx)
	defer cancel()
	resp, err := c.cli.Get(ctx, c.Key(KeyElection), clientv3.WithFirstCreate()...)
	if err != nil {
		return "", false, fmt.Errorf("cluster: read leader: %w", err)
	}
	if len(resp.Kvs) == 0 {
		return "", false, nil
	}
	return string(resp.Kvs[0].Value), true, nil
}
