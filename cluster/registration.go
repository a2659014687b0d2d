package cluster

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Registration keeps one key alive under a lease: a worker's workers/<id> or
// a coordinator's coordinators/<id>. If the lease is lost (etcd unreachable
// for longer than the TTL, so the key was deleted) it registers again under
// a new lease as soon as etcd answers. Close revokes the lease.
type Registration struct {
	c     *Client
	key   string
	value string
	ttl   int64 // seconds
	log   *zap.Logger

	cancel context.CancelFunc
	done   chan struct{}

	mu    sync.Mutex
	lease clientv3.LeaseID
	count int // registrations so far (1 + re-registrations)

	closeOnce sync.Once
	closeErr  error
}

// Register puts workers/<info.ID> under a lease of ttl (rounded up to whole
// seconds, at least 1 s), keeps the lease alive, and re-registers when it
// is lost. The first registration happens before Register returns.
func (c *Client) Register(ctx context.Context, info WorkerInfo, ttl time.Duration) (*Registration, error) {
	if info.ID == "" {
		return nil, fmt.Errorf("cluster: register a worker: empty ID")
	}
	return c.register(ctx, KeyWorkers+info.ID, Marshal(info), ttl)
}

// RegisterCoordinator is Register for a coordinator's coordinators/<id>.
func (c *Client) RegisterCoordinator(ctx context.Context, info CoordinatorInfo, ttl time.Duration) (*Registration, error) {
	if info.ID == "" {
		return nil, fmt.Errorf("cluster: register a coordinator: empty ID")
	}
	return c.register(ctx, KeyCoordinators+info.ID, Marshal(info), ttl)
}

// TTLSeconds is a lease TTL in etcd's whole seconds: d rounded up, at
// least 1.
func TTLSeconds(d time.Duration) int64 {
	s := int64((d + time.Second - 1) / time.Second)
	return max(s, 1)
}

func (c *Client) register(ctx context.Context, name, value string, ttl time.Duration) (*Registration, error) {
	r := &Registration{
		c: c, key: c.Key(name), value: value, ttl: TTLSeconds(ttl),
		log:  c.log.With(zap.String("key", name)),
		done: make(chan struct{}),
	}
	lease, err := r.grantAndPut(ctx)
	if err != nil {
		return nil, err
	}
	loopCtx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	r.setLease(lease)
	go r.loop(loopCtx, lease)
	return r, nil
}

// grantAndPut is one registration: a new lease and the key under it.
func (r *Registration) grantAndPut(ctx context.Context) (clientv3.LeaseID, error) {
	ctx, cancel := r.c.Bounded(ctx)
	defer cancel()
	g, err := r.c.cli.Grant(ctx, r.ttl)
	if err != nil {
		return 0, fmt.Errorf("cluster: register %s: grant a %d s lease: %w", r.key, r.ttl, err)
	}
	if _, err := r.c.cli.Put(ctx, r.key, r.value, clientv3.WithLease(g.ID)); err != nil {
		r.c.cli.Revoke(ctx, g.ID) //nolint:errcheck // best effort; it expires anyway
		return 0, fmt.Errorf("cluster: register %s: %w", r.key, err)
	}
	return g.ID, nil
}

// loop keeps the lease alive; when the keep-alive channel closes (the lease
// expired or etcd was unreachable for the whole TTL) it registers again.
func (r *Registration) loop(ctx context.Context, lease clientv3.LeaseID) {
	defer close(r.done)
	bo := Backoff{Min: 100 * time.Millisecond, Max: 2 * time.Second}
	for {
		ka, err := r.c.cli.KeepAlive(ctx, lease)
		if err == nil {
			for range ka {
			}
		}
		if ctx.Err() != nil {
			return
		}
		r.log.Warn("registration lease lost; registering again", zap.Int64("lease", int64(lease)), zap.Error(err))
		for {
			if !bo.Wait(ctx) {
				return
			}
			lease, err = r.grantAndPut(ctx)
			if err == nil {
				break
			}
			r.log.Debug("re-registration failed; retrying", zap.Error(err))
		}
		bo.Reset()
		r.setLease(lease)
		r.log.Info("registered again", zap.Int64("lease", int64(lease)))
	}
}

func (r *Registration) setLease(l clientv3.LeaseID) {
	r.mu.Lock()
	r.lease = l
	r.count++
	r.mu.Unlock()
}

// Lease is the current lease.
func (r *Registration) Lease() clientv3.LeaseID {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lease
}

// Registrations is how many times the key was registered (1 + the number of
// times a lost lease was replaced).
func (r *Registration) Registrations() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.count
}

// Close stops the keep-alive and revokes the lease, deleting the key at
// once (bounded by the client's request timeout; if etcd is unreachable the
// key disappears when the lease expires). It is idempotent.
func (r *Registration) Close() error {
	r.closeOnce.Do(func() {
		r.cancel()
		<-r.done
		ctx, cancel := r.c.Bounded(context.Background())
		defer cancel()
		// A lease that already expired is as good as revoked.
		if _, err := r.c.cli.Revoke(ctx, r.Lease()); err != nil && !strings.Contains(err.Error(), "lease not found") {
			r.closeErr = fmt.Errorf("cluster: revoke registration %s: %w", r.key, err)
		}
	})
	return r.closeErr
}
