package coordinator

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/ringtrain/ringtrain/cluster"
)

// The coordinator core is a deterministic state machine: the driver feeds it
// Inputs (worker registrations seen in etcd, gossip verdicts, leadership
// changes, ticks) through Step and performs the Actions it returns
// (publish a generation, record an event). It does no I/O and reads no
// clock; time enters as Tick. Like etcd-io/raft's Ready loop, the driver
// owns etcd, memberlist and timers.
//
// Membership rules:
//   - A worker is eligible when it is registered (workers/<id> exists) and
//     not failed. Gossip alone never evicts a worker (every member holds
//     the gossip key, so a "dead" report may be false): gossip's verdict
//     makes it suspected, and a suspected member of the current ring is
//     failed, and excluded, only once a member reports that the current
//     generation failed (a failed collective), before or after the
//     verdict; its lease lapsing (WorkerDown) removes it in any case. A
//     suspected worker outside the ring is not seated. Either mark ends
//     when gossip sees it alive or it registers again with a new Started
//     (a new process).
//   - Ring order is stable: members of the last ring keep their relative
//     order, newcomers are appended in (Started, ID) order (first come,
//     first seated). Survivors therefore keep their neighbours where they
//     can, and standby workers are admitted in arrival order.
//   - MaxWorkers > 0 caps the ring; further eligible workers stand by and
//     are seated when a member goes.
//   - Fewer than MinWorkers eligible: the published ring is empty and the run
//     waits (it does not fail).
//   - A change is debounced: it is published DebounceTicks ticks after the
//     last change of a burst (but at most MaxDebounceTicks after the first),
//     so a burst of joins makes one generation.
//   - A member's report that the current generation failed (RingFailed)
//     makes a new generation even when membership is unchanged, after
//     FailureDelayTicks (long enough for gossip to exclude a dead peer, so
//     the new ring does not include it); reports about older generations
//     are ignored. The member a report blames is probed by the leader
//     itself (ProbeTarget): if its ring port refuses connections
//     (PortClosed) it is failed at once and the next tick publishes — a
//     kill -9 costs one tick, not gossip's detection time. A report alone
//     never fails anyone: a member cannot evict another by blaming it.
//   - Generation numbers strictly increase, continuing from the one stored
//     in etcd when leadership is won. Only the leader emits actions.

// Input is an event fed to Core.Step.
type Input interface{ input() }

// WorkerUp: workers/<id> was put (registered, or re-registered).
type WorkerUp struct{ Info cluster.WorkerInfo }

// WorkerDown: workers/<id> was deleted (lease revoked or expired).
type WorkerDown struct{ ID string }

// WorkersSnapshot replaces the whole registered set (the driver's first read
// of workers/, and rereads after a watch lost its place).
type WorkersSnapshot struct{ Workers []cluster.WorkerInfo }

// GossipFailed: gossip declared the member dead or saw it leave.
type GossipFailed struct {
	Name string
	// Addr is the gossip address of the member gossip declared dead; a
	// verdict about another address than the registered process's is about
	// an earlier process of that worker (a restart raced the verdict) and
	// is ignored. Empty: unknown.
	Addr string
}

// GossipAlive: gossip sees the member alive.
type GossipAlive struct{ Name string }

// RingFailed: a member reported that a collective of a generation failed.
type RingFailed struct{ Failure cluster.Failure }

// PortClosed: the leader's own probe of the member that a failure report of
// generation Gen blamed found its ring port closed or unreachable — the
// process is gone, not merely slow (a stopped process still accepts
// connections) — which confirms the report (ProbeTarget says whom to probe).
type PortClosed struct {
	Name string
	Gen  uint64
}

// BecameLeader: this coordinator won the election; Current is the
// generation stored in etcd (Found false when none was ever published).
type BecameLeader struct {
	Current cluster.Generation
	Found   bool
}

// LostLeadership: the term ended (session expired, resigned, write refused).
type LostLeadership struct{}

// Tick: one unit of time passed.
type Tick struct{}

func (WorkerUp) input()        {}
func (WorkerDown) input()      {}
func (WorkersSnapshot) input() {}
func (GossipFailed) input()    {}
func (GossipAlive) input()     {}
func (RingFailed) input()      {}
func (PortClosed) input()      {}
func (BecameLeader) input()    {}
func (LostLeadership) input()  {}
func (Tick) input()            {}

// Action is something the driver must do.
type Action interface{ action() }

// PublishGeneration: write Gen to etcd, guarded by leadership. The driver
// stamps Created. If the write fails the driver must end the term (the
// next leader rereads etcd), so numbers never repeat.
type PublishGeneration struct{ Gen cluster.Generation }

// RecordEvent: append Event to the run's event log. The driver stamps Time.
type RecordEvent struct{ Event cluster.Event }

func (PublishGeneration) action() {}
func (RecordEvent) action()       {}

// CoreConfig configures a Core.
type CoreConfig struct {
	// ID is this coordinator's ID (the Leader of its generations).
	ID string
	// MinWorkers and MaxWorkers are RunSpec's bounds (MaxWorkers 0: no cap).
	MinWorkers, MaxWorkers int
	// DebounceTicks is how many quiet ticks end a burst of changes (>= 1).
	DebounceTicks int
	// MaxDebounceTicks bounds the wait after the first change of a burst
	// (default 4 × DebounceTicks).
	MaxDebounceTicks int
	// FailureDelayTicks is the wait between a ring-failure report and the
	// new generation it causes, unless a membership change comes first
	// (default MaxDebounceTicks).
	FailureDelayTicks int
}

// Core is the coordinator's membership state machine. Not safe for
// concurrent use: the driver's loop owns it.
type Core struct {
	cfg CoreConfig

	registered map[string]cluster.WorkerInfo
	// suspected marks gossip's unconfirmed verdicts and failed the
	// confirmed ones: name → the Started of the registration gossip
	// declared dead (zero if it was not registered then).
	suspected map[string]time.Time
	failed    map[string]time.Time
	// ringFailed is the generation a member last reported failed.
	ringFailed uint64

	leader bool
	// The last published generation (or the one found in etcd).
	gen     uint64
	found   bool // a generation exists in etcd
	members []cluster.Member
	started map[string]time.Time // members' Started when published
	order   []string             // seating order of the last ring, before the MinWorkers rule
	pending int                  // ticks until a debounced publish; 0: none scheduled
	waited  int                  // ticks since the first change of the burst
	changes []string             // what happened since the last publish, for Reason
	force   bool                 // publish even if the ring is unchanged (a ring failure)
}

// NewCore is a standby Core with no workers.
func NewCore(cfg CoreConfig) *Core {
	if cfg.DebounceTicks < 1 {
		cfg.DebounceTicks = 1
	}
	if cfg.MaxDebounceTicks < cfg.DebounceTicks {
		cfg.MaxDebounceTicks = 4 * cfg.DebounceTicks
	}
	if cfg.FailureDelayTicks < 1 {
		cfg.FailureDelayTicks = cfg.MaxDebounceTicks
	}
	if cfg.MinWorkers < 1 {
		cfg.MinWorkers = 1
	}
	return &Core{cfg: cfg, registered: map[string]cluster.WorkerInfo{}, suspected: map[string]time.Time{},
		failed: map[string]time.Time{}, started: map[string]time.Time{}}
}

// IsLeader reports whether the core acts.
func (c *Core) IsLeader() bool { return c.leader }

// Generation is the last generation published (or found) while leading.
func (c *Core) Generation() (cluster.Generation, bool) {
	return cluster.Generation{Gen: c.gen, Members: slices.Clone(c.members), Leader: c.cfg.ID}, c.found
}

// Registered are the registered workers by ID, with those that failed
// (gossip's verdict, confirmed) and those gossip suspects (unconfirmed).
func (c *Core) Registered() (workers []cluster.WorkerInfo, failed, suspected map[string]bool) {
	failed, suspected = map[string]bool{}, map[string]bool{}
	for id, w := range c.registered {
		workers = append(workers, w)
		if c.isFailed(id) {
			failed[id] = true
		} else if c.isSuspected(id) {
			suspected[id] = true
		}
	}
	sort.Slice(workers, func(i, j int) bool { return workers[i].ID < workers[j].ID })
	return workers, failed, suspected
}

// Step feeds one input and returns the actions to perform, in order.
func (c *Core) Step(in Input) []Action {
	var acts []Action
	switch in := in.(type) {
	case WorkerUp:
		prev, had := c.registered[in.Info.ID]
		c.registered[in.Info.ID] = in.Info
		if f, ok := c.failed[in.Info.ID]; ok && !f.Equal(in.Info.Started) {
			delete(c.failed, in.Info.ID) // a new process
		}
		if f, ok := c.suspected[in.Info.ID]; ok && !f.Equal(in.Info.Started) {
			delete(c.suspected, in.Info.ID)
		}
		switch {
		case !had:
			acts = c.event(acts, "joined", in.Info.ID, in.Info.Addr, "")
		case !prev.Started.Equal(in.Info.Started):
			acts = c.event(acts, "joined", in.Info.ID, "restarted at "+in.Info.Addr, "restarted "+in.Info.ID)
		}
	case WorkerDown:
		if _, had := c.registered[in.ID]; had {
			delete(c.registered, in.ID)
			acts = c.event(acts, "left", in.ID, "registration ended", "")
		}
	case WorkersSnapshot:
		seen := map[string]bool{}
		for _, w := range in.Workers {
			seen[w.ID] = true
			acts = append(acts, c.Step(WorkerUp{Info: w})...)
		}
		for id := range c.registered {
			if !seen[id] {
				acts = append(acts, c.Step(WorkerDown{ID: id})...)
			}
		}
	case GossipFailed:
		if c.isFailed(in.Name) || c.isSuspected(in.Name) {
			break
		}
		if w, ok := c.registered[in.Name]; ok && in.Addr != "" && w.Gossip != "" && in.Addr != w.Gossip {
			break // about an earlier process: the registered one is another
		}
		c.suspected[in.Name] = c.registered[in.Name].Started
		if _, ok := c.registered[in.Name]; !ok {
			break
		}
		if c.leader && c.found && c.ringFailed == c.gen && c.inRing(in.Name) {
			acts = c.confirm(acts, in.Name)
		} else if c.leader {
			acts = append(acts, RecordEvent{Event: cluster.Event{Kind: "suspected", Who: in.Name, Gen: c.gen,
				Detail: "gossip: unreachable; excluded if a collective fails or its lease lapses"}})
		}
	case GossipAlive:
		_, wasFailed := c.failed[in.Name]
		_, wasSuspected := c.suspected[in.Name]
		delete(c.failed, in.Name)
		delete(c.suspected, in.Name)
		_, reg := c.registered[in.Name]
		switch {
		case !reg:
		case wasFailed || wasSuspected && !c.inRing(in.Name):
			acts = c.event(acts, "recovered", in.Name, "gossip: alive again", "")
		case wasSuspected && c.leader: // it never left the ring
			acts = append(acts, RecordEvent{Event: cluster.Event{Kind: "recovered", Who: in.Name, Gen: c.gen, Detail: "gossip: alive again"}})
		}
	case RingFailed:
		f := in.Failure
		if !c.leader || !c.found || f.Gen != c.gen || c.force {
			return nil // stale, a duplicate, or not ours to act on
		}
		c.force = true
		c.ringFailed = f.Gen
		detail := "ring failed: " + f.Error
		if f.Suspect != "" {
			detail += " (suspect " + f.Suspect + ")"
		}
		acts = append(acts, RecordEvent{Event: cluster.Event{Kind: "failed", Who: f.Reporter, Gen: f.Gen, Detail: detail}})
		c.changes = append(c.changes, fmt.Sprintf("gen %d failed on %s", f.Gen, f.Reporter))
		for _, m := range c.members {
			if c.isSuspected(m.ID) {
				acts = c.confirm(acts, m.ID)
			}
		}
		if c.differs() {
			c.schedule() // a member is out: the membership change's shorter wait
		} else if c.pending == 0 {
			c.pending = c.cfg.FailureDelayTicks
		}
		return acts
	case PortClosed:
		if !c.leader || !c.found || in.Gen != c.gen || !c.inRing(in.Name) || c.isFailed(in.Name) {
			return nil
		}
		c.failed[in.Name] = c.registered[in.Name].Started
		delete(c.suspected, in.Name)
		acts = c.event(acts, "failed", in.Name, fmt.Sprintf("generation %d failed and its ring port refuses connections", c.gen), "")
		c.pending = 1 // a confirmed death: the next tick publishes
		return acts
	case BecameLeader:
		c.leader = true
		c.gen, c.found = in.Current.Gen, in.Found
		c.members = slices.Clone(in.Current.Members)
		c.started = map[string]time.Time{}
		for _, m := range c.members {
			if w, ok := c.registered[m.ID]; ok {
				c.started[m.ID] = w.Started // assume the registered process is the member
			}
		}
		c.order = nil
		for _, m := range c.members {
			c.order = append(c.order, m.ID)
		}
		c.pending, c.waited, c.changes, c.force, c.ringFailed = 0, 0, nil, false, 0
		acts = append(acts, RecordEvent{Event: cluster.Event{Kind: "leader", Who: c.cfg.ID, Gen: c.gen,
			Detail: fmt.Sprintf("leading from %s", in.Current)}})
		if !c.found || c.differs() {
			c.changes = append(c.changes, "new leader "+c.cfg.ID)
			c.schedule()
		}
		return acts
	case LostLeadership:
		c.leader = false
		c.pending, c.waited, c.changes, c.force = 0, 0, nil, false
		return nil
	case Tick:
		if !c.leader || c.pending == 0 {
			return nil
		}
		c.pending--
		c.waited++
		if c.pending > 0 && c.waited < max(c.cfg.MaxDebounceTicks, c.cfg.FailureDelayTicks) {
			return nil
		}
		c.pending, c.waited = 0, 0
		if !c.found || c.force || c.differs() {
			acts = append(acts, c.publish()...)
		}
		c.changes, c.force = nil, false
		return acts
	default:
		panic(fmt.Sprintf("coordinator: unknown input %T", in))
	}
	if c.leader && (c.pending > 0 || c.differs()) {
		c.schedule()
	}
	return acts
}

// ProbeTarget is the ring address of the member a failure report blames,
// when the report concerns the current generation of this leader and the
// member is not failed yet: the driver probes it and feeds PortClosed if it
// is gone. ok is false when there is nothing to probe.
func (c *Core) ProbeTarget(f cluster.Failure) (addr string, ok bool) {
	if !c.leader || !c.found || f.Gen != c.gen || f.Suspect == "" || c.isFailed(f.Suspect) {
		return "", false
	}
	for _, m := range c.members {
		if m.ID == f.Suspect {
			return m.Addr, true
		}
	}
	return "", false
}

func (c *Core) isFailed(name string) bool { return c.marked(c.failed, name) }

func (c *Core) isSuspected(name string) bool { return c.marked(c.suspected, name) }

// marked reports whether marks holds name for its registered process.
func (c *Core) marked(marks map[string]time.Time, name string) bool {
	f, ok := marks[name]
	if !ok {
		return false
	}
	w, reg := c.registered[name]
	return !reg || f.IsZero() || f.Equal(w.Started)
}

// inRing reports whether name is a member of the last published ring.
func (c *Core) inRing(name string) bool {
	return slices.ContainsFunc(c.members, func(m cluster.Member) bool { return m.ID == name })
}

// confirm turns gossip's suspicion of a ring member into a failure: the
// current generation failed while gossip says the member is dead.
func (c *Core) confirm(acts []Action, name string) []Action {
	c.failed[name] = c.suspected[name]
	delete(c.suspected, name)
	return c.event(acts, "failed", name, fmt.Sprintf("gossip: unreachable, and generation %d failed", c.gen), "")
}

// event records a membership event (only the leader writes the log) and
// remembers it for the next generation's Reason.
func (c *Core) event(acts []Action, kind, who, detail, change string) []Action {
	if !c.leader {
		return acts
	}
	if change == "" {
		change = kind + " " + who
	}
	c.changes = append(c.changes, change)
	return append(acts, RecordEvent{Event: cluster.Event{Kind: kind, Who: who, Gen: c.gen, Detail: detail}})
}

// schedule (re)starts the debounce countdown.
func (c *Core) schedule() {
	c.pending = c.cfg.DebounceTicks
}

// desired is the ring the rules give now, and the seating order before the
// MinWorkers rule.
func (c *Core) desired() (ring []cluster.Member, seated []string) {
	eligible := map[string]cluster.WorkerInfo{}
	for id, w := range c.registered {
		if !c.isFailed(id) && (!c.isSuspected(id) || c.inRing(id)) {
			eligible[id] = w
		}
	}
	for _, id := range c.order {
		if _, ok := eligible[id]; ok {
			seated = append(seated, id)
			delete(eligible, id)
		}
	}
	if c.cfg.MaxWorkers > 0 && len(seated) > c.cfg.MaxWorkers {
		seated = seated[:c.cfg.MaxWorkers]
	}
	newcomers := make([]cluster.WorkerInfo, 0, len(eligible))
	for _, w := range eligible {
		newcomers = append(newcomers, w)
	}
	sort.Slice(newcomers, func(i, j int) bool {
		a, b := newcomers[i], newcomers[j]
		if !a.Started.Equal(b.Started) {
			return a.Started.Before(b.Started)
		}
		return a.ID < b.ID
	})
	for _, w := range newcomers {
		if c.cfg.MaxWorkers > 0 && len(seated) >= c.cfg.MaxWorkers {
			break
		}
		seated = append(seated, w.ID)
	}
	if len(seated) < c.cfg.MinWorkers {
		return nil, seated
	}
	ring = make([]cluster.Member, len(seated))
	for i, id := range seated {
		ring[i] = cluster.Member{ID: id, Addr: c.registered[id].Addr}
	}
	return ring, seated
}

// differs reports whether the desired ring differs from the published one:
// other members, order or addresses, or a member that is a new process.
func (c *Core) differs() bool {
	ring, _ := c.desired()
	if !slices.Equal(ring, c.members) {
		return true
	}
	for _, m := range ring {
		if s, ok := c.started[m.ID]; ok && !s.Equal(c.registered[m.ID].Started) {
			return true
		}
	}
	return false
}

func (c *Core) publish() []Action {
	ring, seated := c.desired()
	c.gen++
	c.found = true
	c.members = ring
	c.order = seated
	c.started = map[string]time.Time{}
	for _, m := range ring {
		c.started[m.ID] = c.registered[m.ID].Started
	}
	reason := strings.Join(c.changes, "; ")
	if len(ring) == 0 {
		if reason != "" {
			reason += "; "
		}
		reason += fmt.Sprintf("waiting: %d of %d workers", len(seated), c.cfg.MinWorkers)
	}
	g := cluster.Generation{Gen: c.gen, Members: slices.Clone(ring), Reason: reason, Leader: c.cfg.ID}
	return []Action{
		PublishGeneration{Gen: g},
		RecordEvent{Event: cluster.Event{Kind: "generation", Who: c.cfg.ID, Gen: c.gen, Detail: g.String() + ": " + reason}},
	}
}
