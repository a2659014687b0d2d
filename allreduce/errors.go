package allreduce

import (
	"errors"
	"fmt"
	"strings"
)

var (
	// ErrClosed: the Ring or Transport was closed.
	ErrClosed = errors.New("allreduce: closed")
	// ErrStaleGeneration: traffic from an older membership generation.
	ErrStaleGeneration = errors.New("allreduce: stale generation")
	// ErrWrongRun: traffic from another training run.
	ErrWrongRun = errors.New("allreduce: wrong run")
	// ErrPeerTimeout: a peer sent or accepted nothing within Config.PeerTimeout.
	ErrPeerTimeout = errors.New("allreduce: peer timeout")
	// ErrPeerDead: the stream to or from a peer was lost or closed by it.
	ErrPeerDead = errors.New("allreduce: peer dead")
	// ErrAborted: another rank's collective failed and it told us so.
	ErrAborted = errors.New("allreduce: aborted by peer")
	// ErrProtocol: a peer sent a message that does not fit the schedule.
	ErrProtocol = errors.New("allreduce: protocol violation")
	// ErrUnauthorized: a stream's authenticated identity is not the member it
	// claims to be, or the ring and the transport disagree on authentication.
	ErrUnauthorized = errors.New("allreduce: unauthorized")
	// ErrBroken: an earlier collective on this Ring failed; build a new generation.
	ErrBroken = errors.New("allreduce: ring broken by an earlier failure; build a new generation")
)

// PeerError is the error of a collective that failed because of (or while
// waiting on) a peer. Rank and Addr name the suspected peer; use errors.As to
// get it and errors.Is on the error for the cause (ErrPeerTimeout, ErrPeerDead,
// ErrAborted, ErrStaleGeneration, context.DeadlineExceeded, ...).
type PeerError struct {
	Rank int    // suspected peer's rank in the generation
	Addr string // suspected peer's address
	Err  error  // cause

	Generation uint64 // generation of the failed ring
	Self       int    // rank that reports the error
	Op         string // what was being done, e.g. "seq 4: recv chunk 2 from"
}

func (e *PeerError) Error() string {
	cause := strings.TrimPrefix(e.Err.Error(), "allreduce: ")
	return fmt.Sprintf("allreduce: gen %d rank %d: %s rank %d (%s): %s",
		e.Generation, e.Self, e.Op, e.Rank, e.Addr, cause)
}

func (e *PeerError) Unwrap() error { return e.Err }

// GenerationError reports traffic between different runs or generations. It
// names both sides: ours (the reporting endpoint) and the peer's.
// errors.Is matches ErrWrongRun when the runs differ, else ErrStaleGeneration.
type GenerationError struct {
	RunID, PeerRunID           string
	Generation, PeerGeneration uint64
}

func (e *GenerationError) Error() string {
	if e.RunID != e.PeerRunID {
		return fmt.Sprintf("allreduce: wrong run: peer is in run %q (generation %d), this side is in run %q (generation %d)",
			e.PeerRunID, e.PeerGeneration, e.RunID, e.Generation)
	}
	return fmt.Sprintf("allreduce: stale generation: peer is at generation %d, this side is at generation %d (run %q)",
		e.PeerGeneration, e.Generation, e.RunID)
}

// Is makes errors.Is(err, ErrWrongRun) and errors.Is(err, ErrStaleGeneration) work.
func (e *GenerationError) Is(target error) bool {
	if e.RunID != e.PeerRunID {
		return target == ErrWrongRun
	}
	return target == ErrStaleGeneration
}

// flip returns the same mismatch seen from the peer's side.
func (e *GenerationError) flip() *GenerationError {
	return &GenerationError{RunID: e.PeerRunID, PeerRunID: e.RunID, Generation: e.PeerGeneration, PeerGeneration: e.Generation}
}
