package coordinator

import "errors"

var (
	// ErrNoSpec: the run has no spec in etcd yet (no coordinator has started it).
	ErrNoSpec = errors.New("coordinator: run has no spec yet")
	// ErrNotLeader: a leader-only write was refused because this
	// coordinator's leadership term ended.
	ErrNotLeader = errors.New("coordinator: not the leader")
	// ErrContention: a compare-and-swap kept losing to concurrent writers.
	ErrContention = errors.New("coordinator: too much contention")
	// ErrClosed: the object was closed.
	ErrClosed = errors.New("coordinator: closed")
)
