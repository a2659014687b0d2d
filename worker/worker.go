package worker

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"github.com/ringtrain/ringtrain/internal/httpauth"
	"github.com/ringtrain/ringtrain/internal/usage"
	"math"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/ringtrain/ringtrain/allreduce"
	"github.com/ringtrain/ringtrain/checkpoint"
	"github.com/ringtrain/ringtrain/cluster"
	"github.com/ringtrain/ringtrain/dataset"
	"github.com/ringtrain/ringtrain/internal/pki"
	"github.com/ringtrain/ringtrain/nn"
	"github.com/ringtrain/ringtrain/train"
)

// ErrReplicaMismatch: the replicas' parameters differ after a step; the run
// stops (a non-finite loss is train.ErrNonFinite, not this).
var ErrReplicaMismatch = errors.New("worker: replicas diverged")

// ErrFingerprint: at a generation's start a rank stated a fingerprint of
// exact training (train.Fingerprint: GEMM backend and kernel, threads,
// GOARCH, data) other than this rank's; the worker stops, as the ring could
// not stay bit-identical to the run (a worker whose fingerprint differs from
// the run's stored one is refused before it registers, with a usage error).
var ErrFingerprint = errors.New("worker: fingerprints differ")

// Worker is one data-parallel replica: it trains its shard of every global
// minibatch, combines gradients on the ring of the current generation, and
// moves to the next generation whenever membership changes. Its decisions
// are a Core's (core.go); Worker is the driver that owns etcd, the gRPC
// transport, gossip, the step log and the clock.
type Worker struct {
	cfg Config
	log *zap.Logger

	run   *cluster.Client
	tr    *allreduce.GRPCTransport
	tls   *pki.Source // nil: the ring in plaintext (Insecure)
	addr  string
	spec  cluster.RunSpec
	train *dataset.Set
	test  *dataset.Set
	st    *train.State
	hist  *train.History
	// fp is this worker's fingerprint, checked against the run's (exact
	// mode only; nil in float mode).
	fp *train.Fingerprint
	// fpChecked: fp was compared with the run's; false while the run has
	// none (a coordinator stores the first registration's).
	fpChecked bool
	// lastEval is rank 0's latest test loss and accuracy.
	lastEval [2]float64
	// trainStart and trainStartStep are when and where this worker first
	// trained, for the summary's throughput.
	trainStart     time.Time
	trainStartStep int64

	// stopping is closed when Run's context ends: the worker finishes the
	// step in flight, votes to leave inside its all-reduce so that the ring
	// ends the generation at that step boundary, and deregisters.
	stopping chan struct{}

	steplog *os.File
	ckpt    *checkpointer
	prog    *publisher
	metrics *Metrics

	// healthAddr is the bound HealthAddr (tests).
	healthAddr string
}

// New checks cfg and builds a worker; Run starts it.
func New(cfg Config) (*Worker, error) {
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
	tlsSrc, err := loadTLS(cfg)
	if err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	return &Worker{cfg: cfg, tls: tlsSrc, log: cfg.Logger.With(zap.String("run", cfg.Run), zap.String("worker", cfg.ID)), stopping: make(chan struct{}), metrics: NewMetrics()}, nil
}

// loadTLS loads the worker's certificate, which must be worker cfg.ID's;
// nil when Insecure and no certificate is given.
func loadTLS(cfg Config) (*pki.Source, error) {
	if cfg.enrolls() {
		return nil, nil // Run enrolls (enroll.go)
	}
	if cfg.TLS == (pki.Files{}) {
		if cfg.Insecure {
			return nil, nil
		}
		return nil, usage.Errorf("--tls-dir is not set: the ring accepts only members with the run's certificates; " +
			"create them with `ringtrain certs --out DIR --worker-ids ID` and pass --tls-dir DIR/worker/ID, or enroll with --tls-ca DIR/ca.pem --enroll-token-file FILE, or pass --insecure on a trusted network")
	}
	for _, f := range [][2]string{{"--tls-cert", cfg.TLS.Cert}, {"--tls-key", cfg.TLS.Key}, {"--tls-ca", cfg.TLS.CA}} {
		if f[1] == "" {
			return nil, usage.Errorf("%s is not set; give it, or --tls-dir DIR/worker/%s with all three files", f[0], cfg.ID)
		}
	}
	src, err := pki.NewSource(cfg.TLS)
	if err != nil {
		return nil, usage.Errorf("--tls-dir: %v; create the files with `ringtrain certs --out DIR --worker-ids %s`", err, cfg.ID)
	}
	if id := src.Identity(); id.Role != pki.RoleWorker || id.ID != cfg.ID {
		return nil, usage.Errorf("--tls-cert %s is the certificate of %s, not of worker:%s; give this worker's own (--tls-dir DIR/worker/%s) or --id %s",
			cfg.TLS.Cert, id, cfg.ID, cfg.ID, id.ID)
	}
	return src, nil
}

// identify names a verified peer certificate as ring identities are spelt.
func identify(c *x509.Certificate) (string, error) {
	id, err := pki.IdentityOf(c)
	if err != nil {
		return "", err
	}
	return id.String(), nil
}

// Run serves the worker until the run finishes (nil), ctx ends, or an
// unrecoverable error (replica divergence, bad spec) occurs. When ctx ends
// the worker leaves at the next step boundary (bounded by the peer timeout)
// and Run returns nil.
func (w *Worker) Run(stop context.Context) error {
	// The work goes on briefly after stop ends, to leave cleanly.
	ctx, cancel := context.WithCancel(context.WithoutCancel(stop))
	watcher := make(chan struct{})
	defer func() { cancel(); <-watcher }() // the stop watcher ends with ctx
	go func() {
		defer close(watcher)
		select {
		case <-stop.Done():
			close(w.stopping)
		case <-ctx.Done():
			return
		}
		grace := time.NewTimer(2*w.cfg.PeerTimeout + time.Second)
		defer grace.Stop()
		select {
		case <-grace.C:
			cancel()
		case <-ctx.Done():
		}
	}()

	if w.cfg.enrolls() {
		stopRenewing, err := w.enroll(stop)
		if err != nil {
			return err
		}
		defer stopRenewing()
	}
	lis, err := net.Listen("tcp", w.cfg.Listen)
	if err != nil {
		return usage.Errorf("--listen %q: %v", w.cfg.Listen, err)
	}
	w.addr = cluster.AdvertiseAddr(w.cfg.Advertise, lis.Addr())
	opts := []allreduce.GRPCOption{allreduce.WithAdvertiseAddr(w.addr), allreduce.WithGRPCLogger(w.log)}
	if w.tls != nil {
		opts = append(opts, allreduce.WithTLS(allreduce.TLS{Server: w.tls.ServerConfig(), Client: w.tls.ClientConfig(), Identify: identify}))
		w.log.Info("ring over mutual TLS", zap.Stringer("identity", w.tls.Identity()), zap.String("cert", w.tls.Files().Cert))
	} else {
		w.log.Warn("insecure: the ring runs in plaintext, unauthenticated; anyone who reaches --listen can take a rank (pass --tls-dir)",
			zap.String("listen", w.cfg.Listen))
	}
	if w.tr, err = allreduce.NewGRPCTransport(lis, opts...); err != nil {
		lis.Close()
		return err
	}
	defer w.tr.Close()
	stopHealth, err := w.serveHealth()
	if err != nil {
		return err
	}
	defer stopHealth()

	// The worker's certificate is also its etcd identity (user worker:<ID>),
	// which may write only this worker's keys.
	ecfg, err := cluster.SecureEtcd(cluster.EtcdClientConfig(w.cfg.Etcd, w.log.Named("etcd")), w.tls, "--tls-dir")
	if err != nil {
		return err
	}
	if ecfg.TLS == nil && !w.cfg.Insecure {
		w.log.Warn("etcd in plaintext: anyone who reaches it can rewrite the run; give https:// --etcd endpoints (etcd with --client-cert-auth)",
			zap.Strings("etcd", w.cfg.Etcd))
	}
	cli, err := clientv3.New(ecfg)
	if err != nil {
		return fmt.Errorf("worker: etcd %v: %w", w.cfg.Etcd, err)
	}
	defer cli.Close()
	defer cluster.WatchReachability(ctx, cli, w.cfg.Etcd, cluster.ReachPeriod, w.log)()
	w.run = cluster.NewClient(cli, w.cfg.Run, w.log)

	if _, finished, err := w.run.Done(ctx); err == nil && finished {
		w.log.Info("run already finished")
		return nil
	}
	w.log.Info("waiting for the run spec", zap.Strings("etcd", w.cfg.Etcd), zap.String("run", w.cfg.Run))
	if w.spec, err = w.run.WaitSpec(stop); err != nil {
		return err
	}
	if err := w.prepare(stop); err != nil {
		return err
	}
	if w.cfg.StepLog != "" {
		if w.steplog, err = os.OpenFile(w.cfg.StepLog, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644); err != nil {
			return fmt.Errorf("worker: step log: %w", err)
		}
		defer w.steplog.Close()
		w.logLine(fmt.Sprintf(`{"event":"start","pid":%d}`, os.Getpid()))
	}

	gossip, err := w.startGossip(ctx)
	if err != nil {
		return err
	}
	defer gossip.Close()

	info := cluster.WorkerInfo{
		ID: w.cfg.ID, Addr: w.addr, Gossip: gossip.Addr(), HTTP: w.cfg.HTTPAddr, Started: time.Now().UTC(),
	}
	if w.fp != nil {
		info.Fingerprint = *w.fp
	}
	reg, err := w.run.Register(ctx, info, w.cfg.LeaseTTL)
	if err != nil {
		return err
	}
	defer reg.Close()
	if w.fp != nil && !w.fpChecked {
		// The run had no fingerprint: a coordinator stores the first
		// registration's; this worker's may have lost to another's.
		run, err := w.run.WaitFingerprint(stop)
		if err != nil {
			return err
		}
		if err := w.fp.Check(run); err != nil {
			return usage.Errorf("worker %s: %v", w.cfg.ID, err)
		}
		w.fpChecked = true
	}
	w.log.Info("registered", zap.String("addr", w.addr), zap.String("gossip", gossip.Addr()), zap.Int64("step", w.st.Step))
	w.logLine(fmt.Sprintf(`{"event":"registered","step":%d}`, w.st.Step))

	w.prog = newPublisher(w.run, w.cfg.ID, w.log)
	defer w.prog.Close()
	w.ckpt = newCheckpointer(checkpointDeps{root: w.st.Cfg.CheckpointDir, cfg: w.st.Cfg, data: w.train,
		store: w.run, who: w.cfg.ID, log: w.log, metrics: w.metrics})
	defer w.ckpt.Wait()
	return w.loop(ctx)
}

// prepare loads this machine's data and the starting state. Data that does
// not fit the run's network is a usage error, before the worker registers,
// and so (in exact mode) is a fingerprint other than the run's
// (checkFingerprint). The state is the checkpoint that etcd's pointer
// names, else (with a warning) the newest valid one in the checkpoint
// directory, else --init, else the seeded initialisation.
func (w *Worker) prepare(ctx context.Context) error {
	cfg := train.Config{Spec: w.spec.Config, Local: train.DefaultConfig().Local}
	if w.cfg.Data != "" {
		cfg.Data = w.cfg.Data
	}
	if w.cfg.Threads > 0 {
		cfg.Threads = w.cfg.Threads
	}
	cfg.CheckpointDir, cfg.Init = w.cfg.CheckpointDir, w.cfg.Init
	if err := cfg.Local.Validate(); err != nil {
		return err
	}
	if err := cfg.CheckCheckpointDir(); err != nil {
		return err
	}
	var err error
	if w.train, w.test, err = train.LoadData(cfg.Data); err != nil {
		return err
	}
	if w.st, err = train.NewState(cfg, w.train); err != nil {
		return err
	}
	if w.spec.Config.Exact {
		// After NewState, so that data that does not fit never becomes the
		// run's; before SetThreads, which is process-wide, so that a refused
		// worker changes nothing.
		if err := w.checkFingerprint(ctx, train.NewFingerprint(cfg, w.train)); err != nil {
			return err
		}
	}
	nn.SetThreads(cfg.Threads)
	if cfg.CheckpointDir != "" {
		ref, ok, err := w.run.LatestCheckpoint(ctx)
		switch {
		case err != nil:
			w.log.Warn("cannot read the published checkpoint; scanning the checkpoint directory", zap.Error(err))
		case ok:
			dir := ref.Path(cfg.CheckpointDir)
			hist, err := w.st.RestoreDir(dir)
			if err == nil {
				w.hist = hist
				w.log.Info("restored the published checkpoint", zap.String("dir", dir), zap.Int64("step", w.st.Step))
				return nil
			}
			if usage.Is(err) {
				return err
			}
			w.log.Warn("the published checkpoint is not usable; scanning the checkpoint directory", zap.String("dir", dir), zap.Error(err))
		}
	}
	var from string
	if w.hist, from, err = w.st.Resume(func(dir string, err error) {
		w.log.Warn("skipping corrupt checkpoint", zap.String("dir", dir), zap.Error(err))
	}); err != nil {
		return err
	}
	if from != "" {
		w.log.Info("restored checkpoint", zap.String("dir", from), zap.Int64("step", w.st.Step))
	}
	return nil
}

// checkFingerprint compares fp with the run's fingerprint: one that differs
// is a usage error naming this worker, what differs and the fix, and the
// worker exits without registering. A run without one yet takes it from
// the first registration that states one (a coordinator writes it; workers
// cannot), so Run compares again once it is stored.
func (w *Worker) checkFingerprint(ctx context.Context, fp train.Fingerprint) error {
	run, ok, err := w.run.Fingerprint(ctx)
	if err != nil {
		return err
	}
	if ok {
		if err := fp.Check(run); err != nil {
			return usage.Errorf("worker %s: %v", w.cfg.ID, err)
		}
	}
	w.fp, w.fpChecked = &fp, ok
	return nil
}

// events are the driver's sources of Inputs besides its own actions.
type events struct {
	gens <-chan cluster.Generation
	done <-chan train.Summary
	stop <-chan struct{}
}

// next blocks for one event (or ctx's end).
func (ev *events) next(ctx context.Context) (Input, error) {
	if in, ok := ev.poll(ctx.Done()); ok {
		return in, nil
	}
	return nil, ctx.Err()
}

// ready is a closed channel: polled with it, poll does not block.
var ready = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// poll returns the next event, or false once cancel is ready (with ready:
// at once, perhaps before a waiting event, which a later poll takes).
// Closed sources are dropped.
func (ev *events) poll(cancel <-chan struct{}) (Input, bool) {
	for {
		select {
		case g, ok := <-ev.gens:
			if ok {
				return GenerationSeen{Gen: g}, true
			}
			ev.gens = nil
		case _, ok := <-ev.done:
			if ok {
				return RunDone{}, true
			}
			ev.done = nil
		case <-ev.stop:
			ev.stop = nil
			return StopRequested{}, true
		case <-cancel:
			return nil, false
		}
	}
}

// gen is the driver's side of the generation it trains in.
type gen struct {
	g       cluster.Generation
	rank    int
	log     *zap.Logger
	ring    *allreduce.Ring
	stepper *train.Stepper
	steps   []int64 // every rank's step, as the ranks agreed

	lastPub    time.Time
	window     time.Time
	windowStep int64
}

func (g *gen) close() {
	if g != nil && g.ring != nil {
		g.ring.Close()
	}
}

// loop drives the Core until it exits: it feeds the Core the events of
// etcd and of the stop request, performs the actions it returns and feeds
// back their outcomes.
func (w *Worker) loop(ctx context.Context) error {
	core := NewCore(w.cfg.ID, w.addr)
	wctx, cancelWatch := context.WithCancel(ctx)
	gens, done := w.run.WatchGeneration(wctx), w.run.WatchDone(wctx)
	defer joinWatches(cancelWatch, gens, done)
	ev := &events{gens: gens, done: done, stop: w.stopping}
	var cur *gen
	defer func() { cur.close() }()
	var queue []Action
	feed := func(in Input) { queue = append(queue, core.Step(in)...) }
	// drain feeds every event that is ready, so a step's vote sees them.
	drain := func() {
		for {
			in, ok := ev.poll(ready)
			if !ok {
				return
			}
			feed(in)
		}
	}
	waitingLogged := false
	for {
		if len(queue) == 0 {
			if core.Phase() == "waiting" && !waitingLogged {
				waitingLogged = true
				w.log.Info("waiting for a generation that includes this worker")
			}
			in, err := ev.next(ctx)
			if err != nil {
				return err
			}
			feed(in)
			continue
		}
		act := queue[0]
		queue = queue[1:]
		switch a := act.(type) {
		case Join:
			waitingLogged = false
			cur.close()
			var err error
			cur, err = w.join(ctx, a)
			if err != nil {
				feed(w.failure(cur, err))
				continue
			}
			steps, err := w.agreeSteps(ctx, cur)
			if err != nil {
				if errors.Is(err, ErrFingerprint) {
					return err
				}
				feed(w.failure(cur, err))
				continue
			}
			cur.steps = steps
			feed(StepsAgreed{Steps: steps})
		case Sync:
			if err := w.syncFrom(ctx, cur, a.From); err != nil {
				feed(w.failure(cur, fmt.Errorf("state transfer: %w", err)))
				continue
			}
			feed(Synced{})
		case Train:
			drain() // no input ends training: the events only shape the next vote
			if w.st.Done() {
				// The synced state is the run's end (a rank 0 failed while finishing).
				feed(StepDone{Step: w.st.Step, Done: true})
				continue
			}
			r, err := cur.stepper.Step(ctx, a.Vote)
			if err != nil {
				if errors.Is(err, train.ErrNonFinite) || ctx.Err() != nil {
					return err
				}
				feed(w.failure(cur, err))
				continue
			}
			if err := w.afterStep(ctx, cur, r); err != nil {
				if errors.Is(err, ErrReplicaMismatch) {
					return err
				}
				feed(w.failure(cur, err))
				continue
			}
			drain()
			feed(StepDone{Step: r.Step, Leave: r.Leave, Done: r.Done})
		case EndGeneration:
			if cur != nil {
				cur.log.Info("generation ended", zap.String("reason", a.Reason), zap.Int64("step", w.st.Step))
			}
			cur.close()
			cur = nil
		case Report:
			w.metrics.RingFailures.Inc()
			w.log.Warn("generation failed; waiting for the next", zap.Uint64("gen", a.Gen), zap.Int64("step", w.st.Step), zap.String("error", a.Err))
			if err := w.run.ReportFailure(ctx, cluster.Failure{Reporter: w.cfg.ID, Gen: a.Gen, Suspect: a.Suspect, Error: a.Err}); err != nil {
				w.log.Warn("report failure", zap.Error(err))
			}
		case Finish:
			if err := w.finish(ctx, cur); err != nil {
				if ctx.Err() != nil {
					return err
				}
				feed(w.failure(cur, err))
				continue
			}
			feed(FinalWritten{})
		case Exit:
			switch a.Reason {
			case "left":
				w.log.Info("left the ring at a step boundary", zap.Int64("step", w.st.Step))
			case "finished":
				w.log.Info("run finished", zap.Int64("step", w.st.Step))
			default:
				w.log.Info("stopped", zap.Int64("step", w.st.Step))
			}
			return nil
		default:
			panic(fmt.Sprintf("worker: unknown action %T", act))
		}
	}
}

// joinWatches ends the etcd watches and waits, bounded, for their goroutines
// to close their channels.
func joinWatches(cancel context.CancelFunc, gens <-chan cluster.Generation, done <-chan train.Summary) {
	cancel()
	t := time.NewTimer(10 * time.Second)
	defer t.Stop()
	for gens != nil || done != nil {
		select {
		case _, ok := <-gens:
			if !ok {
				gens = nil
			}
		case _, ok := <-done:
			if !ok {
				done = nil
			}
		case <-t.C:
			return
		}
	}
}

// failure is the RingFailed input for err, naming the suspect member when
// err names a peer.
func (w *Worker) failure(cur *gen, err error) Input {
	suspect := ""
	var pe *allreduce.PeerError
	var se *StateError
	switch {
	case cur != nil && errors.As(err, &pe) && pe.Rank >= 0 && pe.Rank < len(cur.g.Members):
		suspect = cur.g.Members[pe.Rank].ID
	case errors.As(err, &se):
		suspect = se.ID
	}
	return RingFailed{Err: err.Error(), Suspect: suspect}
}

// join builds the ring of a generation.
func (w *Worker) join(ctx context.Context, a Join) (*gen, error) {
	world := len(a.Gen.Members)
	cur := &gen{g: a.Gen, rank: a.Rank, log: w.log.With(zap.Uint64("gen", a.Gen.Gen), zap.Int("rank", a.Rank), zap.Int("world", world))}
	ring, err := allreduce.NewRing(ctx, w.tr, allreduce.Config{
		RunID: w.cfg.Run, Generation: a.Gen.Gen, Members: a.Gen.Addrs(), Rank: a.Rank,
		Identities: w.identities(a.Gen), PeerTimeout: w.cfg.PeerTimeout, Logger: cur.log,
	})
	if err != nil {
		return cur, fmt.Errorf("form ring: %w", err)
	}
	cur.ring = ring
	w.metrics.Generation.Set(float64(a.Gen.Gen))
	w.metrics.Members.Set(float64(world))
	w.metrics.Rank.Set(float64(a.Rank))
	w.metrics.resetRanks(world)
	return cur, nil
}

// identities are the ring identities of g's members (worker:<ID>), or nil
// when the ring runs in plaintext.
func (w *Worker) identities(g cluster.Generation) []string {
	if w.tls == nil {
		return nil
	}
	ids := make([]string, len(g.Members))
	for i, m := range g.Members {
		ids[i] = pki.Worker(w.cfg.Run, m.ID).String()
	}
	return ids
}

// agreeSteps tells every rank every rank's step, the length of its state
// vector and, in exact mode, the digest of its fingerprint
// (train.Fingerprint.Sum32): a rank whose length differs from this rank's
// is a *StateError naming it, one whose digest differs is ErrFingerprint.
// Each rank writes its own slots of a vector that is summed: the step and
// the length as two 24-bit halves each and the digest as two 16-bit
// halves, each exact in float32.
func (w *Worker) agreeSteps(ctx context.Context, cur *gen) ([]int64, error) {
	const slots = 6
	world := len(cur.g.Members)
	v := make([]float32, slots*world)
	mine := v[slots*cur.rank:]
	mine[0] = float32(w.st.Step >> 24)
	mine[1] = float32(w.st.Step & (1<<24 - 1))
	var fp uint32
	if w.fp != nil {
		fp = w.fp.Sum32()
		mine[2], mine[3] = float32(fp>>16), float32(fp&0xffff)
	}
	n := w.st.FlatLen()
	mine[4], mine[5] = float32(n>>24), float32(n&(1<<24-1))
	if err := cur.ring.AllReduce(ctx, v); err != nil {
		return nil, fmt.Errorf("state transfer: %w", err)
	}
	steps := make([]int64, world)
	var bad []string
	for r := range steps {
		s := v[slots*r:]
		steps[r] = int64(s[0])<<24 | int64(s[1])
		if theirs := int(s[4])<<24 | int(s[5]); theirs != n {
			return nil, &StateError{Rank: r, ID: cur.g.Members[r].ID,
				Reason: fmt.Sprintf("a state of %d values, this rank's has %d (another network or optimizer)", theirs, n)}
		}
		if theirs := uint32(s[2])<<16 | uint32(s[3]); w.fp != nil && theirs != fp {
			bad = append(bad, fmt.Sprintf("rank %d (%s) states %08x", r, cur.g.Members[r].ID, theirs))
		}
	}
	if len(bad) > 0 {
		return nil, fmt.Errorf("%w at the start of generation %d: %s, this rank %08x (digests of the fingerprint of exact training: GEMM backend and kernel, threads, GOARCH, data); compare the workers' fingerprints (etcd workers/<id>) with the run's (etcd fingerprint)",
			ErrFingerprint, cur.g.Gen, strings.Join(bad, ", "), fp)
	}
	return steps, nil
}

// syncFrom makes every replica's state src's.
func (w *Worker) syncFrom(ctx context.Context, cur *gen, src int) error {
	flat := w.st.FlatState()
	if err := cur.ring.Broadcast(ctx, flat, src); err != nil {
		return err
	}
	if cur.rank != src {
		if err := w.checkReceived(ctx, cur, src, flat); err != nil {
			return err
		}
		if err := w.st.SetFlatState(flat); err != nil {
			return err
		}
		w.metrics.StateTransfers.Inc()
		w.catchUpHistory()
	}
	cur.log.Info("ring formed", zap.String("ring", cur.g.String()), zap.Int64("step", w.st.Step), zap.Int("state_from", src))
	w.logLine(fmt.Sprintf(`{"event":"sync","gen":%d,"rank":%d,"step":%d,"from":%d}`, cur.g.Gen, cur.rank, w.st.Step, src))
	if w.trainStart.IsZero() {
		w.trainStart, w.trainStartStep = time.Now(), w.st.Step
	}
	cur.stepper = train.NewStepper(w.st, w.train, train.RingReducer(cur.ring))
	cur.window, cur.windowStep = time.Now(), w.st.Step
	return nil
}

// afterStep records a step: curves, metrics, the step log, the replica
// check, progress and evaluation (rank 0), and the checkpoint cadence.
func (w *Worker) afterStep(ctx context.Context, cur *gen, r train.Result) error {
	step, world := r.Step, len(cur.g.Members)
	if r.Skipped {
		w.log.Warn("skipped a step: its reduced loss or gradient is not finite (--nonfinite skip)", zap.Int64("step", step))
	} else {
		w.hist.AddLoss(step, r.Loss)
	}
	w.metrics.observeStep(step, w.st.Epoch(), r.Loss, r.ComputeTime, r.ReduceTime, r.Bytes, r.Compute)
	if w.steplog != nil {
		w.logLine(`{"event":"step","gen":` + strconv.FormatUint(cur.g.Gen, 10) + `,"rank":` + strconv.Itoa(cur.rank) +
			`,"step":` + strconv.FormatInt(step, 10) + `,"loss":` + strconv.FormatFloat(r.Loss, 'g', -1, 64) + `}`)
	}
	if hashEvery := int64(w.spec.HashEvery); hashEvery > 0 && step%hashEvery == 0 {
		if err := w.checkReplicas(ctx, cur.ring, cur.rank, world, step); err != nil {
			return err
		}
	}
	if cur.rank != 0 {
		return nil
	}
	if r.Eval && !r.Done { // the final evaluation is finish's
		w.lastEval[0], w.lastEval[1] = w.st.Evaluate(w.test)
		w.hist.AddEval(step, w.lastEval[0], w.lastEval[1])
		w.metrics.Accuracy.Set(w.lastEval[1])
		cur.log.Info("eval", zap.Int64("step", step), zap.Int("epoch", int((step-1)/int64(w.st.StepsPerEpoch))),
			zap.Float64("loss", r.Loss), zap.Float64("test_loss", w.lastEval[0]), zap.Float64("test_accuracy", w.lastEval[1]))
	}
	if now := time.Now(); r.Eval || now.Sub(cur.lastPub) > 500*time.Millisecond {
		p := cluster.Progress{Gen: cur.g.Gen, Step: step, TotalSteps: w.st.TotalSteps, Epoch: w.st.Epoch(),
			Loss: r.Loss, Workers: world, Time: now.UTC(), ComputeMs: make([]float64, world),
			TestLoss: w.lastEval[0], TestAccuracy: w.lastEval[1]} // the latest evaluation rides along
		for q, v := range r.Compute {
			p.ComputeMs[q] = math.Round(float64(v)*1e5) / 100
		}
		if dt := now.Sub(cur.window).Seconds(); dt > 0 {
			p.SamplesPerSec = math.Round(float64(step-cur.windowStep) * float64(w.st.Cfg.Batch) / dt)
			w.metrics.SamplesPerSec.Set(p.SamplesPerSec)
		}
		cur.window, cur.windowStep, cur.lastPub = now, step, now
		w.prog.Publish(p)
	}
	if r.Checkpoint && !r.Done && w.st.Cfg.CheckpointDir != "" { // the final checkpoint is finish's
		w.ckpt.Snapshot(cur.g.Gen, w.st, w.hist)
	}
	return nil
}

// catchUpHistory takes the loss and accuracy curves of the newest checkpoint
// when they reach further than this worker's own, so that whichever rank
// finishes the run plots the whole run (up to that checkpoint) and not only
// the steps it trained itself. Best effort: the curves are not training state.
func (w *Worker) catchUpHistory() {
	dir := w.st.Cfg.CheckpointDir
	if dir == "" {
		return
	}
	ck, err := checkpoint.LatestValid(dir, nil)
	if err != nil {
		return
	}
	var h train.History
	h.Load(ck.Manifest.Metrics)
	if n, m := len(h.Loss), len(w.hist.Loss); n > 0 && (m == 0 || h.Loss[n-1].Step > w.hist.Loss[m-1].Step) {
		*w.hist = h
	}
}

// checkReplicas compares a hash of the parameters across the ring: each rank
// writes its hash into its own slots (16-bit pieces, exact in float32) of a
// vector that is summed, so every rank sees every rank's hash.
func (w *Worker) checkReplicas(ctx context.Context, ring *allreduce.Ring, rank, world int, step int64) error {
	const pieces = 16 // 32-byte hash as 16 uint16
	v := make([]float32, world*pieces)
	h := w.st.ParamHash()
	for i := 0; i < pieces; i++ {
		v[rank*pieces+i] = float32(uint16(h[2*i])<<8 | uint16(h[2*i+1]))
	}
	if err := ring.AllReduce(ctx, v); err != nil {
		return fmt.Errorf("replica check at step %d: %w", step, err)
	}
	var bad []int
	for r := 0; r < world; r++ {
		for i := 0; i < pieces; i++ {
			if v[r*pieces+i] != v[i] {
				bad = append(bad, r)
				break
			}
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("%w at step %d: ranks %v differ from rank 0", ErrReplicaMismatch, step, bad)
	}
	return nil
}

// finish ends the run on rank 0: it evaluates, writes the final checkpoint,
// reports it and reports the run finished (finished/<ID>), which the
// coordinators turn into the run's done key.
func (w *Worker) finish(ctx context.Context, cur *gen) error {
	world := len(cur.g.Members)
	tl, acc := w.st.Evaluate(w.test)
	w.hist.AddEval(w.st.Step, tl, acc)
	sum := train.Summary{Step: w.st.Step, Epoch: int((w.st.Step - 1) / int64(w.st.StepsPerEpoch)),
		TestLoss: tl, TestAccuracy: acc, Workers: world, ParamsSHA256: w.st.ParamsSHA256()}
	if n := len(w.hist.Loss); n > 0 {
		sum.TrainLoss = w.hist.Loss[n-1].Loss
	}
	if secs := time.Since(w.trainStart).Seconds(); !w.trainStart.IsZero() && secs > 0 {
		sum.Seconds = math.Round(secs*1000) / 1000
		sum.SamplesPerSec = math.Round(float64(w.st.Step-w.trainStartStep)*float64(w.st.Cfg.Batch)/secs*10) / 10
	}
	if w.st.Cfg.CheckpointDir != "" {
		dir, err := w.ckpt.SaveNow(ctx, cur.g.Gen, w.st, w.hist)
		if err != nil {
			return err
		}
		sum.Checkpoint = dir
		if err := train.PlotHistory(*w.hist, filepath.Join(dir, train.PlotFile)); err != nil {
			w.log.Warn("plot", zap.Error(err))
		}
	}
	w.prog.Publish(cluster.Progress{Gen: cur.g.Gen, Step: w.st.Step, TotalSteps: w.st.TotalSteps, Epoch: w.st.Epoch(),
		Loss: sum.TrainLoss, TestLoss: tl, TestAccuracy: acc, Workers: world, Time: time.Now().UTC()})
	w.prog.Close()
	if err := w.run.ReportFinished(ctx, w.cfg.ID, sum); err != nil {
		return err
	}
	w.log.Info("run finished", zap.Int64("step", sum.Step), zap.Float64("test_accuracy", acc))
	return nil
}

// logLine appends one record, a JSON object, to the step log, stamped with
// the wall-clock time in Unix nanoseconds ("t") so that recovery and join
// times can be measured from the logs (`ringtrain bench recovery`).
func (w *Worker) logLine(s string) {
	if w.steplog != nil {
		w.steplog.WriteString(`{"t":` + strconv.FormatInt(time.Now().UnixNano(), 10) + "," + s[1:] + "\n")
	}
}
