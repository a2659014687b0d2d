package allreduce

import (
	"context"
	"fmt"
	"sync"
)

// registry is the sessions table that both transports share: it decides
// whether an incoming Hello attaches, waits, or is rejected as stale.
type registry struct {
	mu       sync.Mutex
	sessions map[SessionKey]Handler
	maxGen   map[string]uint64 // highest generation ever registered, per run
	lastRun  string            // run of the latest registration
	changed  chan struct{}     // closed and replaced on every change
	closed   bool
}

func newRegistry() *registry {
	return &registry{
		sessions: make(map[SessionKey]Handler),
		maxGen:   make(map[string]uint64),
		changed:  make(chan struct{}),
	}
}

func (r *registry) notifyLocked() {
	close(r.changed)
	r.changed = make(chan struct{})
}

func (r *registry) register(key SessionKey, h Handler) (func(), error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, ErrClosed
	}
	if _, dup := r.sessions[key]; dup {
		return nil, fmt.Errorf("allreduce: run %q generation %d is registered already on this transport; close its ring first", key.RunID, key.Generation)
	}
	if g, ok := r.maxGen[key.RunID]; ok && key.Generation < g {
		return nil, fmt.Errorf("cannot build a ring: %w", &GenerationError{
			RunID: key.RunID, PeerRunID: key.RunID, Generation: key.Generation, PeerGeneration: g})
	}
	r.sessions[key] = h
	r.maxGen[key.RunID] = max(r.maxGen[key.RunID], key.Generation)
	r.lastRun = key.RunID
	r.notifyLocked()
	var once sync.Once
	return func() {
		once.Do(func() {
			r.mu.Lock()
			defer r.mu.Unlock()
			if r.sessions[key] == h {
				delete(r.sessions, key)
				r.notifyLocked()
			}
		})
	}, nil
}

// current returns the newest (run, generation) this endpoint has registered,
// to name our side in rejections.
func (r *registry) current() SessionKey {
	r.mu.Lock()
	defer r.mu.Unlock()
	return SessionKey{RunID: r.lastRun, Generation: r.maxGen[r.lastRun]}
}

// lookup waits until hello can be resolved: the handler of its session, a
// *GenerationError seen from our side (peer = the hello's sender), ErrClosed,
// or ctx's error.
func (r *registry) lookup(ctx context.Context, hello Hello) (Handler, error) {
	for {
		r.mu.Lock()
		if r.closed {
			r.mu.Unlock()
			return nil, ErrClosed
		}
		if h, ok := r.sessions[hello.Key]; ok {
			r.mu.Unlock()
			return h, nil
		}
		if g, ok := r.maxGen[hello.Key.RunID]; ok && g > hello.Key.Generation {
			r.mu.Unlock()
			return nil, &GenerationError{RunID: hello.Key.RunID, PeerRunID: hello.Key.RunID, Generation: g, PeerGeneration: hello.Key.Generation}
		}
		if r.lastRun != "" && r.lastRun != hello.Key.RunID {
			ge := &GenerationError{RunID: r.lastRun, Generation: r.maxGen[r.lastRun], PeerRunID: hello.Key.RunID, PeerGeneration: hello.Key.Generation}
			r.mu.Unlock()
			return nil, ge
		}
		ch := r.changed
		r.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		}
	}
}

// close rejects all future registrations and lookups and returns the
// sessions that were registered.
func (r *registry) close() []Handler {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil
	}
	r.closed = true
	r.notifyLocked()
	hs := make([]Handler, 0, len(r.sessions))
	for _, h := range r.sessions {
		hs = append(hs, h)
	}
	clear(r.sessions)
	return hs
}
