package coordinator

import (
	"context"
	"fmt"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/ringtrain/ringtrain/cluster"
)

// Elector campaigns for the leadership of a run. The driver depends on this
// interface only, so tests can substitute a fake.
type Elector interface {
	// Campaign blocks until id leads (returning its Term) or ctx ends.
	Campaign(ctx context.Context, id string) (Term, error)
}

// Term is one period of leadership.
type Term interface {
	// Done is closed when the leadership is lost: the session's lease
	// expired (etcd unreachable for a TTL) or the term was resigned.
	Done() <-chan struct{}
	// Guard is a comparison that holds only while this term leads; every
	// leader write is a txn If(Guard()), so a deposed leader cannot write.
	Guard() clientv3.Cmp
	// Resign ends the term at once (revoking the session's lease, so a
	// standby takes over without waiting for a TTL). Idempotent, bounded.
	Resign(ctx context.Context) error
}

// EtcdElector is the Elector over etcd's concurrency.Session and
// concurrency.Election under the run's election/ prefix.
type EtcdElector struct {
	Client *cluster.Client
	// TTL is the session lease's TTL: how long a crashed leader keeps the
	// leadership (rounded up to whole seconds).
	TTL time.Duration
}

var _ Elector = (*EtcdElector)(nil)

// Campaign implements Elector.
func (e *EtcdElector) Campaign(ctx context.Context, id string) (Term, error) {
	c := e.Client
	// Grant the lease ourselves, bounded: NewSession would grant it without
	// a deadline.
	gctx, cancel := c.Bounded(ctx)
	g, err := c.Etcd().Grant(gctx, cluster.TTLSeconds(e.TTL))
	cancel()
	if err != nil {
		return nil, fmt.Errorf("coordinator: campaign: grant session lease: %w", err)
	}
	s, err := concurrency.NewSession(c.Etcd(), concurrency.WithLease(g.ID), concurrency.WithTTL(int(cluster.TTLSeconds(e.TTL))))
	if err != nil {
		rctx, cancel := c.Bounded(context.Background())
		c.Etcd().Revoke(rctx, g.ID) //nolint:errcheck // best effort; it expires
		cancel()
		return nil, fmt.Errorf("coordinator: campaign: session: %w", err)
	}
	t := &etcdTerm{s: s, el: concurrency.NewElection(s, c.Key(cluster.KeyElection))}
	// Campaign blocks until the earlier candidates' keys are gone; give up
	// when ctx ends or our own session dies meanwhile.
	cctx, stop := context.WithCancel(ctx)
	defer stop()
	go func() {
		select {
		case <-s.Done():
			stop()
		case <-cctx.Done():
		}
	}()
	if err := t.el.Campaign(cctx, id); err != nil {
		t.Resign(context.Background()) //nolint:errcheck // closing a failed candidacy
		return nil, fmt.Errorf("coordinator: campaign: %w", err)
	}
	return t, nil
}

type etcdTerm struct {
	s  *concurrency.Session
	el *concurrency.Election

	once sync.Once
	err  error
}

func (t *etcdTerm) Done() <-chan struct{} { return t.s.Done() }

func (t *etcdTerm) Guard() clientv3.Cmp {
	return clientv3.Compare(clientv3.CreateRevision(t.el.Key()), "=", t.el.Rev())
}

func (t *etcdTerm) Resign(context.Context) error {
	// Session.Close stops the keep-alive and revokes the lease, deleting our
	// election key; it bounds the revoke by the session TTL itself.
	t.once.Do(func() { t.err = t.s.Close() })
	return t.err
}
