package cluster

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"time"

	"github.com/ringtrain/ringtrain/train"
)

// Run states of a Snapshot.
const (
	RunWaiting  = "waiting"  // no ring yet (too few workers, or no spec)
	RunTraining = "training" // a generation with members trains
	RunDone     = "done"     // the run finished
)

// Member states of a MemberStatus.
const (
	MemberRing    = "ring"    // in the current generation and registered
	MemberStandby = "standby" // registered, not in the current generation
	MemberFailed  = "failed"  // in the current generation, registration gone
)

// MemberStatus is one worker: in the current ring, standing by, or both
// in the ring and gone.
type MemberStatus struct {
	ID string `json:"id"`
	// Rank in the current generation; -1 outside it.
	Rank  int    `json:"rank"`
	State string `json:"state"`
	// Addr is the gRPC address (from the registration, else the ring).
	Addr string `json:"addr,omitempty"`
	// HTTP is the worker's metrics address, if it serves one.
	HTTP    string    `json:"http,omitempty"`
	Started time.Time `json:"started,omitzero"`
}

// Snapshot is a run's state as stored in etcd, read by ReadSnapshot: what
// the coordinator's dashboard and `ringtrain status` show.
type Snapshot struct {
	Run string `json:"run"`
	// State is RunWaiting, RunTraining or RunDone.
	State string `json:"state"`
	// Leader is the leading coordinator's ID ("" when none).
	Leader     string     `json:"leader,omitempty"`
	Spec       *RunSpec   `json:"spec,omitempty"`
	Generation Generation `json:"generation"` // zero when none was published
	// Members are the current ring in rank order (including failed
	// members), then the standby workers by ID.
	Members      []MemberStatus    `json:"members"`
	Workers      []WorkerInfo      `json:"workers"`
	Coordinators []CoordinatorInfo `json:"coordinators"`
	Progress     *Progress         `json:"progress,omitempty"`
	Checkpoint   *CheckpointRef    `json:"checkpoint,omitempty"`
	// CheckpointPath is Checkpoint's directory under the run spec's
	// checkpoint root (Checkpoint.Path), "" without a checkpoint. A process
	// whose --checkpoint-dir differs resolves Checkpoint itself.
	CheckpointPath string `json:"checkpoint_path,omitempty"`
	// Events are the newest events asked for, newest first.
	Events []Event        `json:"events"`
	Done   *train.Summary `json:"done,omitempty"`
	// Time is when the snapshot was read from etcd.
	Time time.Time `json:"time"`
}

// ReadSnapshot reads run c's state from etcd, key by key (each read
// bounded by c's request timeout), with its newest events events (none
// when events <= 0). A run without a spec is not an error: Spec is nil.
func ReadSnapshot(ctx context.Context, c *Client, events int) (Snapshot, error) {
	s := Snapshot{Run: c.Run(), Time: time.Now()}
	if spec, err := c.Spec(ctx); err == nil {
		s.Spec = &spec
	} else if !errors.Is(err, ErrNoSpec) {
		return s, err
	}
	g, _, err := c.Generation(ctx)
	if err != nil {
		return s, err
	}
	s.Generation = g
	if s.Workers, err = c.Workers(ctx); err != nil {
		return s, err
	}
	if s.Coordinators, err = c.Coordinators(ctx); err != nil {
		return s, err
	}
	if p, ok, err := c.Progress(ctx); err != nil {
		return s, err
	} else if ok {
		s.Progress = &p
	}
	if ref, ok, err := c.LatestCheckpoint(ctx); err != nil {
		return s, err
	} else if ok {
		s.Checkpoint = &ref
		s.CheckpointPath = ref.Path("") // relative to each worker's --checkpoint-dir
	}
	s.Events = []Event{}
	if events > 0 {
		if s.Events, err = c.Events(ctx, events); err != nil {
			return s, err
		}
		slices.Reverse(s.Events)
	}
	if sum, ok, err := c.Done(ctx); err != nil {
		return s, err
	} else if ok {
		s.Done = &sum
	}
	if s.Leader, _, err = c.Leader(ctx); err != nil {
		return s, err
	}
	s.Members = memberStatuses(s.Generation, s.Workers)
	switch {
	case s.Done != nil:
		s.State = RunDone
	case len(s.Generation.Members) > 0:
		s.State = RunTraining
	default:
		s.State = RunWaiting
	}
	return s, nil
}

// memberStatuses lists the ring in rank order, then the standby workers.
func memberStatuses(g Generation, ws []WorkerInfo) []MemberStatus {
	reg := make(map[string]WorkerInfo, len(ws))
	for _, w := range ws {
		reg[w.ID] = w
	}
	out := make([]MemberStatus, 0, max(len(ws), len(g.Members)))
	for rank, m := range g.Members {
		ms := MemberStatus{ID: m.ID, Rank: rank, State: MemberFailed, Addr: m.Addr}
		if w, ok := reg[m.ID]; ok {
			ms.State, ms.HTTP, ms.Started = MemberRing, w.HTTP, w.Started
			ms.Addr = cmp.Or(w.Addr, m.Addr)
		}
		out = append(out, ms)
	}
	var standby []MemberStatus
	for _, w := range ws {
		if g.Rank(w.ID) < 0 {
			standby = append(standby, MemberStatus{ID: w.ID, Rank: -1, State: MemberStandby, Addr: w.Addr, HTTP: w.HTTP, Started: w.Started})
		}
	}
	slices.SortFunc(standby, func(a, b MemberStatus) int { return cmp.Compare(a.ID, b.ID) })
	return append(out, standby...)
}
