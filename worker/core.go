package worker

import (
	"fmt"

	"github.com/ringtrain/ringtrain/cluster"
)

// The replica core is a worker's decisions as a deterministic state machine:
// the driver (worker.go) feeds it Inputs (a generation published, a stop
// request, the run marked done, the outcome of the ring operations it was
// told to do) through Step and performs the Actions it returns (join a ring,
// take the state from a rank, train a step with or without a vote, report a
// failure, write the final checkpoint, exit). It does no I/O and reads no
// clock, like coordinator.Core; the driver owns etcd, gRPC and timers.
//
// Rules:
//   - A worker trains only in a generation newer than every generation it
//     has trained in, that lists it at this incarnation's address (a ring
//     that names an older address is from before a restart). So no message
//     of an ended ring can mix with the next.
//   - A generation starts by agreeing on the most advanced state: every rank
//     states its step, and the lowest rank of those with the highest step
//     hands its state to the others. A rank that applied the last step of a
//     failed generation thus hands it on; no step is lost or applied twice.
//   - A worker votes, inside a step's reduction, to end the generation after
//     that step when it has seen a newer generation or has been asked to
//     stop; every rank sees the sum, so the ring leaves together at the step
//     boundary and no collective fails. A stopping worker exits after the
//     step it voted in.
//   - A failed ring operation ends the generation: the worker reports it (so
//     the coordinator forms a new ring even if nobody left) and waits for a
//     newer generation, unless it is stopping, in which case it exits.
//   - After the last step rank 0 writes the final checkpoint and marks the
//     run done; the other ranks wait for that, or for a newer generation
//     should rank 0 fail first (then the run's end is trained again from the
//     synced state: the newest rank 0 finishes it).

// Input is an event fed to Core.Step.
type Input interface{ input() }

// GenerationSeen: the coordinator published Gen.
type GenerationSeen struct{ Gen cluster.Generation }

// StopRequested: the worker was asked to stop (SIGTERM, a scale-down).
type StopRequested struct{}

// RunDone: the run is marked done.
type RunDone struct{}

// StepsAgreed: the ring of the joined generation exchanged every rank's
// step (Steps[r] is rank r's).
type StepsAgreed struct{ Steps []int64 }

// Synced: every rank holds the source rank's state.
type Synced struct{}

// StepDone: a step was applied. Leave: some rank voted to end the
// generation. Done: it was the run's last step.
type StepDone struct {
	Step        int64
	Leave, Done bool
}

// RingFailed: forming the ring, the sync or a step's collective failed.
// Suspect is the member the failure points at ("" when unknown).
type RingFailed struct {
	Err     string
	Suspect string
}

// FinalWritten: rank 0 wrote the final checkpoint and reported the run
// finished (a coordinator then marks it done).
type FinalWritten struct{}

func (GenerationSeen) input() {}
func (StopRequested) input()  {}
func (RunDone) input()        {}
func (StepsAgreed) input()    {}
func (Synced) input()         {}
func (StepDone) input()       {}
func (RingFailed) input()     {}
func (FinalWritten) input()   {}

// Action is something the driver must do.
type Action interface{ action() }

// Join: build the ring of Gen as Rank, then exchange the ranks' steps
// (answer StepsAgreed or RingFailed).
type Join struct {
	Gen  cluster.Generation
	Rank int
}

// Sync: broadcast From's state to every rank (answer Synced or RingFailed).
type Sync struct{ From int }

// Train: run one step, voting to end the generation after it when Vote
// (answer StepDone or RingFailed).
type Train struct{ Vote bool }

// EndGeneration: close the ring of the generation; the worker waits for a
// newer one.
type EndGeneration struct{ Reason string }

// Report: tell the coordinator that generation Gen failed here.
type Report struct {
	Gen     uint64
	Suspect string
	Err     string
}

// Finish: rank 0 evaluates, writes the final checkpoint and reports the run
// finished (answer FinalWritten or RingFailed).
type Finish struct{}

// Exit: the worker is done; Reason says why (finished, left, stopped).
type Exit struct{ Reason string }

func (Join) action()          {}
func (Sync) action()          {}
func (Train) action()         {}
func (EndGeneration) action() {}
func (Report) action()        {}
func (Finish) action()        {}
func (Exit) action()          {}

// phase is where the worker is in its life.
type phase int

const (
	waiting   phase = iota // for a generation that includes it
	joining                // the ring is being formed, steps exchanged
	syncing                // the state is being handed out
	training               // a step is in flight
	finishing              // all steps applied; rank 0 finishing, the others waiting
	exited
)

func (p phase) String() string {
	return [...]string{"waiting", "joining", "syncing", "training", "finishing", "exited"}[p]
}

// Core is a replica's state machine. Not safe for concurrent use: the
// driver's loop owns it.
type Core struct {
	id, addr string

	phase phase
	// after is the newest generation this worker has joined.
	after uint64
	// gen and rank are the joined generation's.
	gen  cluster.Generation
	rank int
	// latest is the newest generation seen.
	latest   cluster.Generation
	stopping bool
	done     bool
	// voteStop: the step in flight carries this worker's vote to stop.
	voteStop bool
}

// NewCore is the core of worker id, whose collectives listen at addr.
func NewCore(id, addr string) *Core { return &Core{id: id, addr: addr, rank: -1} }

// Step feeds one input and returns the actions to perform, in order.
func (c *Core) Step(in Input) []Action {
	if c.phase == exited {
		return nil
	}
	switch in := in.(type) {
	case GenerationSeen:
		if in.Gen.Gen <= c.latest.Gen {
			return nil // an older publication delivered late
		}
		c.latest = in.Gen
		switch c.phase {
		case waiting:
			return c.tryJoin()
		case finishing:
			if c.rank != 0 {
				// Rank 0 failed before it finished: take part in the next ring.
				c.phase = waiting
				return append([]Action{EndGeneration{Reason: "newer generation while finishing"}}, c.tryJoin()...)
			}
		}
		return nil // training: the next step votes
	case StopRequested:
		c.stopping = true
		switch c.phase {
		case waiting, finishing:
			if c.phase == finishing && c.rank == 0 {
				return nil // the final checkpoint is being written; FinalWritten ends it
			}
			return c.exit("stopped")
		}
		return nil // joining, syncing, training: leave at the next step boundary
	case RunDone:
		c.done = true
		switch c.phase {
		case waiting, finishing:
			if c.phase == finishing && c.rank == 0 {
				return nil
			}
			return c.exit("finished")
		}
		return nil
	case StepsAgreed:
		if c.phase != joining {
			return nil
		}
		if len(in.Steps) != len(c.gen.Members) {
			return c.failed(fmt.Sprintf("%d steps agreed for %d members", len(in.Steps), len(c.gen.Members)), "")
		}
		src := 0
		for r, s := range in.Steps {
			if s > in.Steps[src] {
				src = r
			}
		}
		c.phase = syncing
		return []Action{Sync{From: src}}
	case Synced:
		if c.phase != syncing {
			return nil
		}
		c.phase = training
		return []Action{c.train()}
	case StepDone:
		if c.phase != training {
			return nil
		}
		switch {
		case in.Done:
			c.phase = finishing
			if c.rank == 0 {
				return []Action{Finish{}}
			}
			if c.stopping {
				return c.exit("stopped")
			}
			if c.done {
				return c.exit("finished")
			}
			if c.latest.Gen > c.gen.Gen {
				c.phase = waiting
				return append([]Action{EndGeneration{Reason: "newer generation while finishing"}}, c.tryJoin()...)
			}
			return nil
		case c.voteStop:
			return c.exit("left")
		case in.Leave:
			c.phase = waiting
			return append([]Action{EndGeneration{Reason: "the ring voted to leave for a newer generation"}}, c.tryJoin()...)
		}
		return []Action{c.train()}
	case RingFailed:
		switch c.phase {
		case joining, syncing, training, finishing:
		default:
			return nil
		}
		return c.failed(in.Err, in.Suspect)
	case FinalWritten:
		if c.phase != finishing || c.rank != 0 {
			return nil
		}
		return c.exit("finished")
	}
	panic(fmt.Sprintf("worker: unknown input %T", in))
}

// tryJoin joins the newest generation if it is newer than every one joined
// and lists this incarnation.
func (c *Core) tryJoin() []Action {
	if c.stopping {
		return c.exit("stopped")
	}
	if c.done {
		return c.exit("finished")
	}
	g := c.latest
	if g.Gen <= c.after {
		return nil
	}
	r := g.Rank(c.id)
	if r < 0 || g.Members[r].Addr != c.addr {
		return nil
	}
	c.phase, c.after, c.gen, c.rank = joining, g.Gen, g, r
	return []Action{Join{Gen: g, Rank: r}}
}

func (c *Core) train() Action {
	c.voteStop = c.stopping
	return Train{Vote: c.stopping || c.latest.Gen > c.gen.Gen}
}

func (c *Core) failed(err, suspect string) []Action {
	acts := []Action{EndGeneration{Reason: "failed: " + err}}
	if c.stopping {
		return append(acts, c.exit("stopped")...)
	}
	acts = append(acts, Report{Gen: c.gen.Gen, Suspect: suspect, Err: err})
	c.phase = waiting
	return append(acts, c.tryJoin()...)
}

func (c *Core) exit(reason string) []Action {
	c.phase = exited
	return []Action{Exit{Reason: reason}}
}

// Phase is the core's phase, for logs and tests.
func (c *Core) Phase() string { return c.phase.String() }

// Generation is the joined generation and this worker's rank in it.
func (c *Core) Generation() (cluster.Generation, int) { return c.gen, c.rank }
