package coordinator

import "errors"

// ErrNotLeader: a leader-only write was refused because this coordinator's
// leadership term ended.
var ErrNotLeader = errors.New("coordinator: not the leader")
