package cluster

import (
	"fmt"
	"io"
	"log"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
	"go.uber.org/zap"
)

// GossipConfig configures one memberlist member. Coordinators and workers
// both run one; a worker's Name must be its WorkerInfo.ID so that the
// coordinator can map gossip failures to registrations, and a
// coordinator's is GossipName(its ID).
type GossipConfig struct {
	// Name is the member's unique name in the cluster (a worker's ID).
	Name string
	// BindAddr and BindPort are where memberlist listens (UDP and TCP);
	// port 0 picks a free port.
	BindAddr string
	BindPort int
	// AdvertiseAddr and AdvertisePort are what other members dial; empty/0
	// means the bound address and port.
	AdvertiseAddr string
	AdvertisePort int
	// Fast tunes the timings like memberlist.DefaultLocalConfig, only
	// faster, so that a dead member is declared failed in about 1 s on a
	// LAN or loopback (probe every 200 ms, suspicion 400 ms). Off: the
	// memberlist LAN defaults (several seconds).
	Fast bool
	// SecretKey is the run's gossip key (16, 24 or 32 bytes; see
	// ParseGossipKey): every message is encrypted and authenticated with
	// it, and a message without it is dropped, so a member without the key
	// can neither join nor change what the keyed members see. Empty: plain
	// gossip (only with --insecure).
	SecretKey []byte
	// Logger receives memberlist's own log lines (debug/info/warn/error);
	// default zap.NewNop().
	Logger *zap.Logger
}

// GossipName is a coordinator's memberlist name (workers use their ID).
func GossipName(coordinatorID string) string { return "coordinator:" + coordinatorID }

// MemberEventKind is what happened to a gossip member.
type MemberEventKind int

const (
	// MemberJoin: the member is alive (joined, or came back).
	MemberJoin MemberEventKind = iota
	// MemberLeave: the member is gone: it left gracefully or failure
	// detection declared it dead (memberlist v0.7 does not tell its event
	// delegate which: Node.State is not filled in).
	MemberLeave
)

func (k MemberEventKind) String() string {
	switch k {
	case MemberJoin:
		return "join"
	case MemberLeave:
		return "leave"
	}
	return "MemberEventKind(" + strconv.Itoa(int(k)) + ")"
}

// MemberEvent is one membership change seen by gossip.
type MemberEvent struct {
	Name, Addr string
	Kind       MemberEventKind
}

// gossipEventBuffer is the size of the events channel. memberlist calls the
// event delegate from its own goroutines and must never block on a slow
// owner, so events go into this buffer and, when it is full, the oldest
// event is dropped (and counted, and logged). A drop means the owner is far
// behind; Alive() is the ground truth to reconcile from.
const gossipEventBuffer = 256

// Gossip is a memberlist member whose join/leave/failure events arrive on a
// channel that the owner drains: gossip events are inputs to the owner's
// state machine, never direct mutations.
type Gossip struct {
	ml  *memberlist.Memberlist
	log *zap.Logger

	mu      sync.Mutex // guards closed and sends on events
	closed  bool
	events  chan MemberEvent
	dropped uint64

	closeOnce sync.Once
	closeErr  error
}

// NewGossip starts a memberlist member; it is alone until Join.
func NewGossip(cfg GossipConfig) (*Gossip, error) {
	if cfg.Name == "" {
		return nil, fmt.Errorf("cluster: gossip: empty member name")
	}
	lg := cfg.Logger
	if lg == nil {
		lg = zap.NewNop()
	}
	mc := memberlist.DefaultLANConfig()
	if cfg.Fast {
		fastGossipTimings(mc)
	} else {
		// A restarted process (same name, new port) may take over its dead
		// predecessor's name after this long.
		mc.DeadNodeReclaimTime = 10 * time.Second
	}
	mc.Name = cfg.Name
	if len(cfg.SecretKey) > 0 {
		mc.SecretKey = cfg.SecretKey
		mc.GossipVerifyIncoming, mc.GossipVerifyOutgoing = true, true
	}
	mc.BindAddr = cfg.BindAddr
	if mc.BindAddr == "" {
		mc.BindAddr = "0.0.0.0"
	}
	mc.BindPort = cfg.BindPort
	mc.AdvertiseAddr = cfg.AdvertiseAddr
	mc.AdvertisePort = cfg.AdvertisePort
	if mc.AdvertisePort == 0 {
		mc.AdvertisePort = cfg.BindPort // memberlist replaces both when BindPort is 0
	}
	mc.Logger = log.New(&memberlistLogWriter{log: lg}, "", 0)
	g := &Gossip{log: lg, events: make(chan MemberEvent, gossipEventBuffer)}
	mc.Events = (*gossipDelegate)(g)
	ml, err := memberlist.Create(mc)
	if err != nil {
		return nil, fmt.Errorf("cluster: gossip on %s:%d: %w", mc.BindAddr, cfg.BindPort, err)
	}
	g.ml = ml
	return g, nil
}

// fastGossipTimings detects a dead member in about a second: a probe every
// 200 ms with a 100 ms ack timeout, then a 400 ms suspicion (SuspicionMult 2
// × 200 ms for clusters under 10 members, with no confirmations awaited).
func fastGossipTimings(mc *memberlist.Config) {
	mc.TCPTimeout = 500 * time.Millisecond
	mc.IndirectChecks = 1
	mc.RetransmitMult = 2
	mc.SuspicionMult = 2
	mc.SuspicionMaxTimeoutMult = 2
	mc.PushPullInterval = 5 * time.Second
	mc.ProbeTimeout = 100 * time.Millisecond
	mc.ProbeInterval = 200 * time.Millisecond
	mc.GossipInterval = 50 * time.Millisecond
	mc.GossipToTheDeadTime = 2 * time.Second
	mc.AwarenessMaxMultiplier = 2
	mc.DeadNodeReclaimTime = time.Second
}

// Join contacts seeds (host:port) and returns how many answered. Seeds that
// do not answer are not an error as long as one does.
func (g *Gossip) Join(seeds []string) (int, error) {
	if len(seeds) == 0 {
		return 0, nil
	}
	n, err := g.ml.Join(seeds)
	if err != nil {
		return n, fmt.Errorf("cluster: gossip join %v: %w", seeds, err)
	}
	return n, nil
}

// Events delivers membership changes (see gossipEventBuffer for what
// happens when the owner falls behind). It is closed by Close.
func (g *Gossip) Events() <-chan MemberEvent { return g.events }

// Alive is the set of member names gossip currently considers alive
// (suspected members count as alive), this member included.
func (g *Gossip) Alive() map[string]bool {
	out := map[string]bool{}
	for _, n := range g.ml.Members() {
		out[n.Name] = true
	}
	return out
}

// Addr is the advertised host:port other members join.
func (g *Gossip) Addr() string {
	n := g.ml.LocalNode()
	return net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port)))
}

// Name is this member's name.
func (g *Gossip) Name() string { return g.ml.LocalNode().Name }

// Dropped is how many events were dropped because the owner fell behind.
func (g *Gossip) Dropped() uint64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.dropped
}

// Close leaves the cluster gracefully (bounded by a timeout), shuts
// memberlist down and closes Events. It is idempotent.
func (g *Gossip) Close() error {
	return g.close(true)
}

// Shutdown stops memberlist without telling anyone, like a crash: the
// other members detect a failure (tests and fault injection use it; a
// process that stops on purpose calls Close). Either one closes Events,
// and the other is then a no-op.
func (g *Gossip) Shutdown() error { return g.close(false) }

func (g *Gossip) close(leave bool) error {
	g.closeOnce.Do(func() {
		if leave {
			if err := g.ml.Leave(time.Second); err != nil {
				g.log.Debug("gossip leave", zap.Error(err))
			}
		}
		g.closeErr = g.ml.Shutdown()
		g.mu.Lock()
		g.closed = true
		close(g.events)
		g.mu.Unlock()
	})
	return g.closeErr
}

func (g *Gossip) push(ev MemberEvent) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return
	}
	select {
	case g.events <- ev:
		return
	default:
	}
	// Full: drop the oldest so the newest, most relevant state gets in.
	select {
	case old := <-g.events:
		g.dropped++
		g.log.Warn("gossip event buffer full; dropped the oldest event",
			zap.String("dropped", old.Name), zap.Stringer("kind", old.Kind), zap.Uint64("total_dropped", g.dropped))
	default:
	}
	select {
	case g.events <- ev:
	default:
	}
}

// gossipDelegate is the memberlist.EventDelegate of a Gossip.
type gossipDelegate Gossip

var _ memberlist.EventDelegate = (*gossipDelegate)(nil)

func (d *gossipDelegate) NotifyJoin(n *memberlist.Node) {
	(*Gossip)(d).push(MemberEvent{Name: n.Name, Addr: n.Address(), Kind: MemberJoin})
}

func (d *gossipDelegate) NotifyLeave(n *memberlist.Node) {
	(*Gossip)(d).push(MemberEvent{Name: n.Name, Addr: n.Address(), Kind: MemberLeave})
}

func (d *gossipDelegate) NotifyUpdate(*memberlist.Node) {}

// memberlistLogWriter turns memberlist's "[LEVEL] memberlist: msg" lines into
// zap entries. Its info lines are chatty and its errors are routine when a
// peer dies (failed pings), so they drop one level: info→debug, error→warn.
type memberlistLogWriter struct{ log *zap.Logger }

var _ io.Writer = (*memberlistLogWriter)(nil)

func (w *memberlistLogWriter) Write(p []byte) (int, error) {
	line := strings.TrimSpace(string(p))
	level, msg, ok := strings.Cut(line, "] ")
	if !ok || !strings.HasPrefix(level, "[") {
		w.log.Info(line)
		return len(p), nil
	}
	switch level[1:] {
	case "DEBUG", "INFO":
		w.log.Debug(msg)
	default:
		w.log.Warn(msg)
	}
	return len(p), nil
}
