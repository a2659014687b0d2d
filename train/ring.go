package train

import (
	"context"

	"github.com/ringtrain/ringtrain/allreduce"
)

// RingReducer is the Reducer of one generation's ring: each Start is one
// ring all-reduce. Collectives run one at a time in the order started, on
// a goroutine that the returned Pending's Wait joins, so a caller can keep
// computing (the next bucket's backward) while one is in flight.
func RingReducer(r *allreduce.Ring) Reducer { return &ringReducer{ring: r} }

type ringReducer struct {
	ring *allreduce.Ring
	last chan struct{} // closed when the newest collective started has ended
}

func (r *ringReducer) Rank() int  { return r.ring.Session().Rank() }
func (r *ringReducer) World() int { return r.ring.Session().Size() }

func (r *ringReducer) Start(ctx context.Context, buf []float32) Pending {
	return r.start(func() error { return r.ring.AllReduce(ctx, buf) })
}

func (r *ringReducer) StartInt64(ctx context.Context, buf []int64) Pending {
	return r.start(func() error { return r.ring.AllReduceInt64(ctx, buf) })
}

func (r *ringReducer) StartFixed(ctx context.Context, acc []int64, out []float32, convert func(lo, hi int)) Pending {
	return r.start(func() error { return r.ring.AllReduceInt64ToFloat32(ctx, acc, out, convert) })
}

func (r *ringReducer) start(collective func() error) Pending {
	p := &ringPending{done: make(chan struct{})}
	prev := r.last
	r.last = p.done
	go func() {
		defer close(p.done)
		if prev != nil {
			<-prev // the ring's collectives must start in the same order on every rank
		}
		p.err = collective()
	}()
	return p
}

type ringPending struct {
	done chan struct{}
	err  error
}

func (p *ringPending) Wait() error {
	<-p.done
	return p.err
}
