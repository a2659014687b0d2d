package cluster

import "errors"

var (
	// ErrNoSpec: the run has no spec in etcd yet (no coordinator has started it).
	ErrNoSpec = errors.New("cluster: run has no spec yet")
	// ErrContention: a compare-and-swap kept losing to concurrent writers.
	ErrContention = errors.New("cluster: too much contention")
)
