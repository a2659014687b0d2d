package coordinator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/ringtrain/ringtrain/cluster"
	"github.com/ringtrain/ringtrain/internal/httpauth"
)

// recentEvents is how many events Status keeps in memory.
const recentEvents = 50

// Coordinator is the driver around Core: it owns the etcd client, the
// election, the workers/ watch, gossip, timers and the probe servers, feeds
// their events into the Core and performs its actions.
type Coordinator struct {
	cfg  Config
	log  *zap.Logger // with run and coordinator fields
	base *zap.Logger // with the coordinator field (Client adds run)
	sec  secrets     // certificate, issuing CA, bootstrap token

	leader atomic.Bool

	mu     sync.Mutex // guards status
	status Status
}

// Status is a snapshot of what a coordinator sees, for the dashboard.
type Status struct {
	ID     string `json:"id"`
	Run    string `json:"run"`
	Leader bool   `json:"leader"`
	// Generation is the last one this coordinator published or found when
	// it won leadership (zero on a standby that never led).
	Generation cluster.Generation `json:"generation"`
	// Workers are the registered workers; Failed those excluded as dead
	// (gossip's verdict, confirmed by a failed collective), Suspected those
	// gossip declared dead without confirmation (still in the ring).
	Workers   []cluster.WorkerInfo `json:"workers"`
	Failed    map[string]bool      `json:"failed,omitempty"`
	Suspected map[string]bool      `json:"suspected,omitempty"`
	// Events are the latest events this coordinator recorded, oldest first.
	Events []cluster.Event `json:"events"`
	// Addresses actually bound (useful with port 0).
	GRPCAddr string `json:"grpc_addr,omitempty"`
	// GRPCAdvertise is the gRPC address registered for workers to enroll at.
	GRPCAdvertise string          `json:"grpc_advertise,omitempty"`
	HealthAddr    string          `json:"health_addr,omitempty"`
	HTTPAddr      string          `json:"http_addr,omitempty"`
	GossipAddr    string          `json:"gossip_addr,omitempty"`
	Spec          cluster.RunSpec `json:"spec"`
}

// New checks cfg and builds a Coordinator; Run starts it.
func New(cfg Config) (*Coordinator, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	var err error
	if cfg.GossipKey, err = cluster.GossipKeyOr(cfg.GossipKey, "--gossip-key-file", cfg.GossipKeyFile); err != nil {
		return nil, err
	}
	if cfg.HTTPToken, err = httpauth.TokenOr(cfg.HTTPToken, "--http-token-file", cfg.HTTPTokenFile); err != nil {
		return nil, err
	}
	sec, err := loadSecrets(cfg)
	if err != nil {
		return nil, err
	}
	lg := cfg.Logger
	if lg == nil {
		lg = zap.NewNop()
	}
	base := lg.With(zap.String("coordinator", cfg.ID))
	return &Coordinator{cfg: cfg, log: base.With(zap.String("run", cfg.Run)), base: base, sec: sec,
		status: Status{ID: cfg.ID, Run: cfg.Run}}, nil
}

// IsLeader reports whether this coordinator leads now.
func (c *Coordinator) IsLeader() bool { return c.leader.Load() }

// Status is a snapshot of the coordinator's view.
func (c *Coordinator) Status() Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.status
	s.Workers = slices.Clone(s.Workers)
	s.Events = slices.Clone(s.Events)
	return s
}

func (c *Coordinator) updateStatus(f func(*Status)) {
	c.mu.Lock()
	f(&c.status)
	c.mu.Unlock()
}

// Run coordinates until ctx ends (returning ctx's error) or the run's done
// key appears (returning nil). A coordinator that cannot reach etcd keeps
// retrying; it never exits on an outage.
func (c *Coordinator) Run(ctx context.Context) error {
	if c.cfg.Insecure {
		c.log.Warn("insecure: running without the run's secrets where none are given (--insecure); only on a trusted network")
	}
	ecfg := cluster.EtcdClientConfig(c.cfg.Etcd, c.log.Named("etcd"))
	ecfg.DialTimeout = c.cfg.DialTimeout
	// The coordinator's certificate is also its etcd identity (user
	// coordinator:<ID>, which holds etcd's root role: see cluster/auth.go).
	ecfg, err := cluster.SecureEtcd(ecfg, c.sec.tls, "--tls-dir")
	if err != nil {
		return err
	}
	if ecfg.TLS == nil && !c.cfg.Insecure {
		c.log.Warn("etcd in plaintext: anyone who reaches it can rewrite the run; give https:// --etcd endpoints (etcd with --client-cert-auth)",
			zap.Strings("etcd", c.cfg.Etcd))
	}
	cli, err := clientv3.New(ecfg)
	if err != nil {
		return fmt.Errorf("coordinator: etcd %v: %w", c.cfg.Etcd, err)
	}
	defer cli.Close()
	defer cluster.WatchReachability(ctx, cli, c.cfg.Etcd, cluster.ReachPeriod, c.log)()
	client := cluster.NewClient(cli, c.cfg.Run, c.base)
	if c.sec.issuer != nil && ecfg.TLS != nil {
		if err := c.provisionEtcd(ctx, ecfg, cli); err != nil {
			return err
		}
	}

	spec, err := c.putSpec(ctx, client)
	if err != nil {
		return err
	}
	c.updateStatus(func(s *Status) { s.Spec = spec })

	hs := health.NewServer()
	hs.SetServingStatus(HealthServiceLeader, healthpb.HealthCheckResponse_NOT_SERVING)
	stopServers, err := c.serve(ctx, hs, client)
	if err != nil {
		return err
	}
	defer stopServers()

	g, err := cluster.NewGossip(c.gossipConfig())
	if err != nil {
		return err
	}
	defer g.Close()
	c.updateStatus(func(s *Status) { s.GossipAddr = g.Addr() })

	reg, err := c.registerSelf(ctx, client, g)
	if err != nil {
		return err
	}
	defer reg.Close()

	elector := c.cfg.Elector
	if elector == nil {
		elector = &EtcdElector{Client: client, TTL: c.cfg.LeaseTTL}
	}

	l := &loop{
		c: c, client: client, gossip: g, health: hs, elector: elector,
		core: NewCore(CoreConfig{ID: c.cfg.ID, MinWorkers: spec.MinWorkers, MaxWorkers: spec.MaxWorkers,
			DebounceTicks: c.cfg.DebounceTicks}),
		inputs: make(chan Input),
		terms:  make(chan Term),
		joins:  make(chan string, 64),        // seeds to join; dropped when full (a later WorkerUp or the periodic rejoin retries)
		events: make(chan cluster.Event, 64), // events to write; dropped when full, logged (the log is informational)
	}
	return l.run(ctx)
}

// putSpec stores the configured spec unless one exists, retrying until etcd
// answers, and returns the run's spec.
func (c *Coordinator) putSpec(ctx context.Context, client *cluster.Client) (cluster.RunSpec, error) {
	spec, err := retry(ctx, c.log, "write the run spec", func() (cluster.RunSpec, error) {
		return client.PutSpecIfAbsent(ctx, c.cfg.Spec)
	})
	if err == nil && !reflect.DeepEqual(spec, c.cfg.Spec) {
		c.log.Warn("the run already has a different spec; using the stored one (start a new --run to change it)",
			zap.String("stored", cluster.Marshal(spec)))
	}
	return spec, err
}

func (c *Coordinator) registerSelf(ctx context.Context, client *cluster.Client, g *cluster.Gossip) (*cluster.Registration, error) {
	info := cluster.CoordinatorInfo{ID: c.cfg.ID, Gossip: g.Addr(), HTTP: c.Status().HTTPAddr, GRPC: c.Status().GRPCAdvertise, Started: time.Now()}
	return retry(ctx, c.log, "register", func() (*cluster.Registration, error) {
		return client.RegisterCoordinator(ctx, info, c.cfg.LeaseTTL)
	})
}

// retry calls f until it succeeds, logging each failure and backing off, or
// until ctx ends.
func retry[T any](ctx context.Context, log *zap.Logger, what string, f func() (T, error)) (T, error) {
	bo := cluster.Backoff{Min: 100 * time.Millisecond, Max: 2 * time.Second}
	for {
		v, err := f()
		if err == nil {
			return v, nil
		}
		log.Warn("cannot "+what+"; retrying", zap.Error(err))
		if !bo.Wait(ctx) {
			var zero T
			return zero, fmt.Errorf("coordinator: %s: %w", what, ctx.Err())
		}
	}
}

func (c *Coordinator) gossipConfig() cluster.GossipConfig {
	host, port, _ := net.SplitHostPort(c.cfg.GossipBind)
	p, _ := strconv.Atoi(port)
	gc := cluster.GossipConfig{Name: cluster.GossipName(c.cfg.ID), BindAddr: host, BindPort: p, Fast: c.cfg.GossipFast,
		SecretKey: c.cfg.GossipKey, Logger: c.log.Named("gossip")}
	if c.cfg.GossipAdvertise != "" {
		ah, ap, _ := net.SplitHostPort(c.cfg.GossipAdvertise)
		gc.AdvertiseAddr = ah
		gc.AdvertisePort, _ = strconv.Atoi(ap)
	}
	return gc
}

// serve starts the gRPC health server and the HTTP server; the returned
// function stops both (bounded).
func (c *Coordinator) serve(ctx context.Context, hs *health.Server, client *cluster.Client) (stop func(), err error) {
	var stops []func()
	stop = func() {
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
	}
	gstop, err := c.serveGRPC(hs, client)
	stops = append(stops, func() { hs.Shutdown(); gstop() })
	if err != nil {
		stop()
		return func() {}, err
	}
	if c.cfg.HTTPAddr != "" {
		lis, err := net.Listen("tcp", c.cfg.HTTPAddr)
		if err != nil {
			stop()
			return func() {}, fmt.Errorf("coordinator: --http-addr %s: %w", c.cfg.HTTPAddr, err)
		}
		mux := http.NewServeMux()
		// The dashboard, /api/snapshot and /metrics; /healthz below wins over it.
		d := NewDashboard(client, func() (bool, string) {
			if c.IsLeader() {
				return true, c.cfg.ID
			}
			return false, ""
		}, c.log) // NewDashboard names it
		d.CheckpointRoot = c.cfg.CheckpointDir
		mux.Handle("/", d.Handler(NewMetrics()))
		dctx, dcancel := context.WithCancel(ctx)
		ddone := make(chan struct{})
		go func() { defer close(ddone); d.Run(dctx, 0) }()
		stops = append(stops, func() { dcancel(); <-ddone })
		mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
			s := c.Status()
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(map[string]any{ //nolint:errcheck // client went away
				"ok": true, "id": s.ID, "run": s.Run, "leader": c.IsLeader(), "generation": s.Generation.Gen,
			})
		})
		srv := &http.Server{Handler: httpauth.Guard(mux, c.cfg.HTTPToken), ReadHeaderTimeout: 5 * time.Second}
		done := make(chan struct{})
		go func() { defer close(done); srv.Serve(lis) }() //nolint:errcheck // returns on Shutdown
		c.updateStatus(func(s *Status) { s.HTTPAddr = lis.Addr().String() })
		stops = append(stops, func() {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			if srv.Shutdown(ctx) != nil {
				srv.Close()
			}
			<-done
		})
	}
	return stop, nil
}

// loop is Run's state: the goroutine that owns the Core and the goroutines
// that feed it.
type loop struct {
	c       *Coordinator
	client  *cluster.Client
	gossip  *cluster.Gossip
	health  *health.Server
	elector Elector
	core    *Core

	inputs chan Input         // from the workers/ watch
	terms  chan Term          // from the campaign loop
	joins  chan string        // gossip addresses to join
	events chan cluster.Event // to the event writer

	term       Term // current term, nil on a standby
	termDone   <-chan struct{}
	waiting    Term // a term won before the first workers snapshot
	synced     bool // the first WorkersSnapshot was fed
	recordedEv []cluster.Event
	probes     sync.WaitGroup // probe goroutines, joined when run returns
}

// probeTimeout bounds the leader's probe of a blamed member's ring port.
const probeTimeout = 300 * time.Millisecond

// probe dials the ring address of the member a failure report blames and
// feeds PortClosed if nothing accepts within probeTimeout. A process that
// is alive, even stopped, has its listener accept the connection.
func (l *loop) probe(ctx context.Context, name string, gen uint64, addr string) {
	l.probes.Go(func() {
		d := net.Dialer{Timeout: probeTimeout}
		conn, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			conn.Close()
			return
		}
		if ctx.Err() != nil {
			return
		}
		l.c.log.Info("a blamed member's ring port refuses connections", zap.String("worker", name), zap.String("addr", addr), zap.Error(err))
		select {
		case l.inputs <- PortClosed{Name: name, Gen: gen}:
		case <-ctx.Done():
		}
	})
}

func (l *loop) run(ctx context.Context) error {
	c := l.c
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
		l.probes.Wait()
		l.setLeader(false)
	}()

	wg.Go(func() { l.watchWorkers(ctx) })
	wg.Go(func() { l.watchFailures(ctx) })
	wg.Go(func() { l.campaign(ctx) })
	wg.Go(func() { l.joinLoop(ctx) })
	wg.Go(func() { l.writeEvents(ctx) })
	wg.Go(func() { l.promote(ctx, c.Status().Spec.Config.Exact) })
	done := l.client.WatchDone(ctx)
	l.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)

	tick := time.NewTicker(c.cfg.Tick)
	defer tick.Stop()
	gossipEvents := l.gossip.Events()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case sum, ok := <-done:
			if ok {
				c.log.Info("the run is done; exiting", zap.Int64("step", sum.Step))
				return nil
			}
			done = nil // ctx ended; the ctx case returns
		case in := <-l.inputs:
			snap, isSnap := in.(WorkersSnapshot)
			if up, ok := in.(WorkerUp); ok {
				l.maybeJoin(up.Info)
			}
			for _, w := range snap.Workers {
				l.maybeJoin(w)
			}
			l.step(ctx, in)
			if rf, ok := in.(RingFailed); ok {
				if addr, ok := l.core.ProbeTarget(rf.Failure); ok {
					l.probe(ctx, rf.Failure.Suspect, rf.Failure.Gen, addr)
				}
			}
			if isSnap && !l.synced {
				l.synced = true
				if l.waiting != nil {
					t := l.waiting
					l.waiting = nil
					l.lead(ctx, t)
				}
			}
		case ev, ok := <-gossipEvents:
			if !ok {
				gossipEvents = nil
				continue
			}
			if ev.Kind == cluster.MemberLeave { // a suspicion: the core waits for a confirmation
				l.step(ctx, GossipFailed{Name: ev.Name, Addr: ev.Addr})
			} else {
				l.step(ctx, GossipAlive{Name: ev.Name})
			}
		case <-tick.C:
			l.step(ctx, Tick{})
		case t := <-l.terms:
			if !l.synced {
				l.waiting = t
				continue
			}
			l.lead(ctx, t)
		case <-l.termDone:
			c.log.Warn("leadership lost")
			l.endTerm(ctx, false)
		}
	}
}

// lead starts a term: read the stored generation, then feed BecameLeader.
func (l *loop) lead(ctx context.Context, t Term) {
	g, found, err := l.client.Generation(ctx)
	if err != nil {
		l.c.log.Warn("won the election but cannot read the generation; resigning", zap.Error(err))
		t.Resign(ctx) //nolint:errcheck // the campaign loop sees Done and retries
		return
	}
	l.term, l.termDone = t, t.Done()
	l.setLeader(true)
	l.c.log.Info("leading", zap.Stringer("generation", g))
	l.c.updateStatus(func(s *Status) { s.Generation = g })
	l.step(ctx, BecameLeader{Current: g, Found: found})
}

// endTerm feeds LostLeadership and, if resign, gives the term up.
func (l *loop) endTerm(ctx context.Context, resign bool) {
	if l.term == nil {
		return
	}
	t := l.term
	l.term, l.termDone = nil, nil
	l.setLeader(false)
	l.step(ctx, LostLeadership{})
	if resign {
		t.Resign(ctx) //nolint:errcheck // bounded; the lease expires otherwise
	}
}

func (l *loop) setLeader(b bool) {
	l.c.leader.Store(b)
	st := healthpb.HealthCheckResponse_NOT_SERVING
	if b {
		st = healthpb.HealthCheckResponse_SERVING
	}
	l.health.SetServingStatus(HealthServiceLeader, st)
	l.c.updateStatus(func(s *Status) { s.Leader = b })
}

// step feeds in to the core and performs the actions.
func (l *loop) step(ctx context.Context, in Input) {
	acts := l.core.Step(in)
	for _, a := range acts {
		switch a := a.(type) {
		case PublishGeneration:
			if err := l.publish(ctx, a.Gen); err != nil {
				// The core counted this generation as published; end the
				// term so that the next one rereads etcd.
				l.c.log.Warn("publishing a generation failed; stepping down", zap.Stringer("generation", a.Gen), zap.Error(err))
				l.endTerm(ctx, true)
				return
			}
		case RecordEvent:
			ev := a.Event
			ev.Time = time.Now()
			l.recordedEv = append(l.recordedEv, ev)
			if len(l.recordedEv) > recentEvents {
				l.recordedEv = slices.Delete(l.recordedEv, 0, len(l.recordedEv)-recentEvents)
			}
			select {
			case l.events <- ev:
			default:
				l.c.log.Warn("event log writer behind; dropping an event", zap.String("kind", ev.Kind), zap.String("who", ev.Who))
			}
		}
	}
	ws, failed, suspected := l.core.Registered()
	l.c.updateStatus(func(s *Status) {
		s.Workers, s.Failed, s.Suspected = ws, failed, suspected
		s.Events = slices.Clone(l.recordedEv)
	})
}

// publish writes g to etcd if this term still leads.
func (l *loop) publish(ctx context.Context, g cluster.Generation) error {
	if l.term == nil {
		return ErrNotLeader
	}
	g.Created = time.Now()
	won, err := l.client.PutGeneration(ctx, g, l.term.Guard())
	if err != nil {
		return fmt.Errorf("coordinator: publish %s: %w", g, err)
	}
	if !won {
		return fmt.Errorf("coordinator: publish %s: %w (the election key is gone)", g, ErrNotLeader)
	}
	l.c.log.Info("published", zap.Stringer("generation", g), zap.String("reason", g.Reason))
	l.c.updateStatus(func(s *Status) { s.Generation = g })
	return nil
}

// watchWorkers feeds workers/ into the loop: a snapshot first (and after a
// compaction), then puts and deletes.
func (l *loop) watchWorkers(ctx context.Context) {
	send := func(in Input) bool {
		select {
		case l.inputs <- in:
			return true
		case <-ctx.Done():
			return false
		}
	}
	pfx := l.client.Key(cluster.KeyWorkers)
	l.client.Follow(ctx, pfx, true,
		func(resp *clientv3.GetResponse) bool {
			var ws []cluster.WorkerInfo
			for _, kv := range resp.Kvs {
				var w cluster.WorkerInfo
				if err := json.Unmarshal(kv.Value, &w); err != nil {
					l.c.log.Warn("skipping an undecodable worker registration", zap.ByteString("key", kv.Key), zap.Error(err))
					continue
				}
				ws = append(ws, w)
			}
			return send(WorkersSnapshot{Workers: ws})
		},
		func(ev *clientv3.Event) bool {
			id := string(ev.Kv.Key[len(pfx):])
			if ev.Type == clientv3.EventTypeDelete {
				return send(WorkerDown{ID: id})
			}
			var w cluster.WorkerInfo
			if err := json.Unmarshal(ev.Kv.Value, &w); err != nil {
				l.c.log.Warn("skipping an undecodable worker registration", zap.String("id", id), zap.Error(err))
				return true
			}
			return send(WorkerUp{Info: w})
		})
}

// watchFailures feeds workers' ring-failure reports into the loop (the core
// ignores those about older generations, so replays on resync are harmless).
func (l *loop) watchFailures(ctx context.Context) {
	send := func(v []byte) bool {
		var f cluster.Failure
		if err := json.Unmarshal(v, &f); err != nil {
			l.c.log.Warn("skipping an undecodable failure report", zap.Error(err))
			return true
		}
		select {
		case l.inputs <- RingFailed{Failure: f}:
			return true
		case <-ctx.Done():
			return false
		}
	}
	l.client.Follow(ctx, l.client.Key(cluster.KeyFailures), true,
		func(resp *clientv3.GetResponse) bool {
			for _, kv := range resp.Kvs {
				if !send(kv.Value) {
					return false
				}
			}
			return true
		},
		func(ev *clientv3.Event) bool {
			if ev.Type != clientv3.EventTypePut {
				return true
			}
			return send(ev.Kv.Value)
		})
}

// campaign runs the election: campaign, hand the term to the loop, wait for
// it to end, campaign again. On exit it resigns, so a standby takes over at
// once.
func (l *loop) campaign(ctx context.Context) {
	bo := cluster.Backoff{Min: 100 * time.Millisecond, Max: 2 * time.Second}
	for ctx.Err() == nil {
		t, err := l.elector.Campaign(ctx, l.c.cfg.ID)
		if err != nil {
			if ctx.Err() == nil {
				l.c.log.Debug("campaign failed; retrying", zap.Error(err))
				bo.Wait(ctx)
			}
			continue
		}
		bo.Reset()
		select {
		case l.terms <- t:
		case <-ctx.Done():
		}
		select {
		case <-t.Done():
		case <-ctx.Done():
		}
		rctx, cancel := l.client.Bounded(context.Background())
		t.Resign(rctx) //nolint:errcheck // bounded; the lease expires otherwise
		cancel()
	}
}

// maybeJoin asks the join loop to contact a registered worker that gossip
// does not know yet.
func (l *loop) maybeJoin(w cluster.WorkerInfo) {
	if w.Gossip == "" || l.gossip.Alive()[w.ID] {
		return
	}
	select {
	case l.joins <- w.Gossip:
	default:
	}
}

// joinLoop joins gossip seeds: at start the registered coordinators' and
// workers' addresses, then those maybeJoin sends, and every few seconds any
// registered member gossip does not see (bounded: memberlist's TCP timeout).
func (l *loop) joinLoop(ctx context.Context) {
	rejoin := time.NewTicker(5 * time.Second)
	defer rejoin.Stop()
	seeds := func() []string {
		var out []string
		alive := l.gossip.Alive()
		if cs, err := l.client.Coordinators(ctx); err == nil {
			for _, ci := range cs {
				if ci.ID != l.c.cfg.ID && ci.Gossip != "" && !alive[cluster.GossipName(ci.ID)] {
					out = append(out, ci.Gossip)
				}
			}
		}
		if ws, err := l.client.Workers(ctx); err == nil {
			for _, w := range ws {
				if w.Gossip != "" && !alive[w.ID] {
					out = append(out, w.Gossip)
				}
			}
		}
		return out
	}
	join := func(addrs []string) {
		if len(addrs) == 0 {
			return
		}
		if n, err := l.gossip.Join(addrs); err != nil {
			l.c.log.Debug("gossip join", zap.Strings("seeds", addrs), zap.Int("joined", n), zap.Error(err))
		}
	}
	join(seeds())
	for {
		select {
		case <-ctx.Done():
			return
		case a := <-l.joins:
			join([]string{a})
		case <-rejoin.C:
			join(seeds())
		}
	}
}

// writeEvents appends the core's events to etcd's event log, off the loop.
func (l *loop) writeEvents(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case ev := <-l.events:
			if err := l.client.AddEvent(ctx, ev); err != nil && !errors.Is(err, context.Canceled) {
				l.c.log.Warn("recording an event failed", zap.String("kind", ev.Kind), zap.Error(err))
			}
		}
	}
}
