package worker

import (
	"context"
	"errors"
	"fmt"
	"github.com/ringtrain/ringtrain/internal/usage"
	"math"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/ringtrain/ringtrain/allreduce"
	"github.com/ringtrain/ringtrain/checkpoint"
	"github.com/ringtrain/ringtrain/coordinator"
	"github.com/ringtrain/ringtrain/dataset"
	"github.com/ringtrain/ringtrain/nn"
	"github.com/ringtrain/ringtrain/train"
)

// Errors that end a generation.
var (
	// errNewerGeneration: the ring agreed to leave for a newer generation at a step boundary.
	errNewerGeneration = errors.New("worker: newer generation published")
	// errFinished: the run is complete.
	errFinished = errors.New("worker: run finished")
	// errLeaving: this worker was asked to stop and left at a step boundary.
	errLeaving = errors.New("worker: leaving")
	// ErrReplicaMismatch: replicas diverged; the run stops.
	ErrReplicaMismatch = errors.New("worker: replicas diverged")
)

// Worker is one data-parallel replica: it trains its shard of every global
// minibatch, combines gradients on the ring of the current generation, and
// moves to the next generation whenever membership changes.
type Worker struct {
	cfg Config
	log *zap.Logger

	run   *coordinator.Client
	tr    *allreduce.GRPCTransport
	addr  string
	spec  coordinator.RunSpec
	train *dataset.Set
	test  *dataset.Set
	st    *train.State
	hist  *train.History
	// buf is Net.Grads followed by control slots reduced with it: the loss
	// sum, the votes to leave for a newer generation, and each rank's
	// compute time (its arrival at the collective) in its own slot.
	buf []float32
	// lastEval is rank 0's latest test loss and accuracy.
	lastEval [2]float64
	// trainStart and trainStartStep are when and where this worker first
	// trained, for the summary's throughput.
	trainStart     time.Time
	trainStartStep int64

	latest  atomic.Pointer[coordinator.Generation]
	changed chan struct{} // size 1: a newer generation arrived

	// stopping is closed when Run's context ends: the worker finishes the
	// step in flight, votes to leave inside its all-reduce so that the ring
	// ends the generation at that step boundary, and deregisters.
	stopping chan struct{}

	steplog *os.File
	ckpt    *checkpointer
	prog    *publisher
	metrics *Metrics
}

// New checks cfg and builds a worker; Run starts it.
func New(cfg Config) (*Worker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	return &Worker{cfg: cfg, log: cfg.Logger.With(zap.String("run", cfg.Run), zap.String("worker", cfg.ID)), changed: make(chan struct{}, 1), stopping: make(chan struct{}), metrics: NewMetrics()}, nil
}

// Run serves the worker until the run finishes (nil), ctx ends, or an
// unrecoverable error (replica divergence, bad spec) occurs. When ctx ends
// the worker leaves at the next step boundary (bounded by the peer timeout)
// and Run returns nil.
func (w *Worker) Run(stop context.Context) error {
	// The work goes on briefly after stop ends, to leave cleanly.
	ctx, cancel := context.WithCancel(context.WithoutCancel(stop))
	defer cancel()
	go func() {
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

	lis, err := net.Listen("tcp", w.cfg.Listen)
	if err != nil {
		return usage.Errorf("--listen %q: %v", w.cfg.Listen, err)
	}
	w.addr = advertise(w.cfg.Advertise, lis.Addr())
	if w.tr, err = allreduce.NewGRPCTransport(lis, allreduce.WithAdvertiseAddr(w.addr), allreduce.WithGRPCLogger(w.log)); err != nil {
		lis.Close()
		return err
	}
	defer w.tr.Close()

	cli, err := clientv3.New(coordinator.EtcdClientConfig(w.cfg.Etcd, w.log.Named("etcd")))
	if err != nil {
		return fmt.Errorf("worker: etcd %v: %w", w.cfg.Etcd, err)
	}
	defer cli.Close()
	w.run = coordinator.NewClient(cli, w.cfg.Run, w.log)

	if _, finished, err := w.run.Done(ctx); err == nil && finished {
		w.log.Info("run already finished")
		return nil
	}
	w.log.Info("waiting for the run spec", zap.Strings("etcd", w.cfg.Etcd), zap.String("run", w.cfg.Run))
	if w.spec, err = w.run.WaitSpec(stop); err != nil {
		return err
	}
	if err := w.prepare(); err != nil {
		return err
	}
	if w.cfg.StepLog != "" {
		if w.steplog, err = os.OpenFile(w.cfg.StepLog, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644); err != nil {
			return fmt.Errorf("worker: step log: %w", err)
		}
		defer w.steplog.Close()
	}

	gossip, err := w.startGossip(ctx)
	if err != nil {
		return err
	}
	defer gossip.Close()

	reg, err := w.run.Register(ctx, coordinator.WorkerInfo{
		ID: w.cfg.ID, Addr: w.addr, Gossip: gossip.Addr(), HTTP: w.cfg.HTTPAddr, Started: time.Now().UTC(),
	}, w.cfg.LeaseTTL)
	if err != nil {
		return err
	}
	defer reg.Close()
	w.log.Info("registered", zap.String("addr", w.addr), zap.String("gossip", gossip.Addr()), zap.Int64("step", w.st.Step))

	w.prog = newPublisher(w.run, w.log)
	defer w.prog.Close()
	w.ckpt = newCheckpointer(w)
	defer w.ckpt.Wait()

	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Add(1)
	go func() {
		defer wg.Done()
		w.followGenerations(ctx)
	}()
	return w.loop(ctx)
}

// prepare loads data and the starting state: the newest valid checkpoint in
// the shared checkpoint directory, else --init, else the seeded initialisation.
func (w *Worker) prepare() error {
	cfg := w.spec.Config
	if w.cfg.Data != "" {
		cfg.Data = w.cfg.Data
	}
	if w.cfg.Threads > 0 {
		cfg.Threads = w.cfg.Threads
	}
	if w.cfg.CheckpointDir != "" {
		cfg.CheckpointDir = w.cfg.CheckpointDir
	}
	nn.SetThreads(cfg.Threads)
	var err error
	if w.train, w.test, err = train.LoadData(cfg.Data); err != nil {
		return err
	}
	if w.st, err = train.NewState(cfg, w.train.N); err != nil {
		return err
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

// followGenerations keeps w.latest current and signals w.changed.
func (w *Worker) followGenerations(ctx context.Context) {
	for g := range w.run.WatchGeneration(ctx) {
		g := g
		w.latest.Store(&g)
		select {
		case w.changed <- struct{}{}:
		default:
		}
	}
}

// loop runs generation after generation until the run ends.
func (w *Worker) loop(ctx context.Context) error {
	// after is the newest generation this worker has trained in: every
	// later ring is a newer generation, so no message of an ended ring can
	// be mistaken for one of the next.
	var after uint64
	done := w.run.WatchDone(ctx)
	for {
		g, err := w.awaitGeneration(ctx, after, done)
		if err != nil {
			if errors.Is(err, errFinished) || errors.Is(err, errLeaving) {
				return nil
			}
			return err
		}
		after = g.Gen
		err = w.runGeneration(ctx, g)
		switch {
		case err == nil || errors.Is(err, errFinished):
			return nil
		case errors.Is(err, errLeaving):
			w.log.Info("left the ring at a step boundary", zap.Uint64("gen", g.Gen), zap.Int64("step", w.st.Step))
			return nil
		case errors.Is(err, errNewerGeneration):
			continue
		case errors.Is(err, ErrReplicaMismatch), ctx.Err() != nil:
			return err
		case w.isStopping():
			return nil
		default:
			w.metrics.RingFailures.Inc()
			w.log.Warn("generation failed; waiting for the next", zap.Uint64("gen", g.Gen), zap.Int64("step", w.st.Step), zap.Error(err))
			w.reportFailure(ctx, g, err)
		}
	}
}

func (w *Worker) isStopping() bool {
	select {
	case <-w.stopping:
		return true
	default:
		return false
	}
}

// awaitGeneration blocks until a generation newer than after includes this
// worker, or the run finishes, or the worker is stopping.
func (w *Worker) awaitGeneration(ctx context.Context, after uint64, done <-chan train.Summary) (coordinator.Generation, error) {
	waiting := false
	for {
		// A generation that lists this worker at another address is from
		// before a restart: wait for the one with this incarnation.
		if g := w.latest.Load(); g != nil && g.Gen > after {
			if r := g.Rank(w.cfg.ID); r >= 0 && g.Members[r].Addr == w.addr {
				return *g, nil
			}
		}
		if !waiting {
			waiting = true
			w.log.Info("waiting for a generation that includes this worker")
		}
		select {
		case <-ctx.Done():
			return coordinator.Generation{}, ctx.Err()
		case <-w.stopping:
			return coordinator.Generation{}, errLeaving
		case <-w.changed:
		case _, ok := <-done:
			if ok {
				return coordinator.Generation{}, errFinished
			}
			done = nil
		}
	}
}

// reportFailure tells the coordinator that generation g failed here, so that
// it forms a new one even when no member has left (a lost message, a peer
// that came back). Best effort.
func (w *Worker) reportFailure(ctx context.Context, g coordinator.Generation, err error) {
	suspect := ""
	var pe *allreduce.PeerError
	if errors.As(err, &pe) && pe.Rank >= 0 && pe.Rank < len(g.Members) {
		suspect = g.Members[pe.Rank].ID
	}
	if rerr := w.run.ReportFailure(ctx, coordinator.Failure{Reporter: w.cfg.ID, Gen: g.Gen, Suspect: suspect, Error: err.Error()}); rerr != nil {
		w.log.Warn("report failure", zap.Error(rerr))
	}
}

// runGeneration trains on the ring of g until the run finishes, the ring
// agrees to move to a newer generation, or a collective fails.
func (w *Worker) runGeneration(ctx context.Context, g coordinator.Generation) error {
	rank, world := g.Rank(w.cfg.ID), len(g.Members)
	log := w.log.With(zap.Uint64("gen", g.Gen), zap.Int("rank", rank), zap.Int("world", world))
	ring, err := allreduce.NewRing(ctx, w.tr, allreduce.Config{
		RunID: w.cfg.Run, Generation: g.Gen, Members: g.Addrs(), Rank: rank,
		PeerTimeout: w.cfg.PeerTimeout, Logger: log,
	})
	if err != nil {
		return fmt.Errorf("form ring: %w", err)
	}
	defer ring.Close()
	w.metrics.Generation.Set(float64(g.Gen))
	w.metrics.Members.Set(float64(world))
	w.metrics.Rank.Set(float64(rank))
	w.metrics.resetRanks(world)

	src, err := w.sync(ctx, ring, rank, world)
	if err != nil {
		return fmt.Errorf("state transfer: %w", err)
	}
	log.Info("ring formed", zap.String("ring", g.String()), zap.Int64("step", w.st.Step), zap.Int("state_from", src))
	w.logLine(fmt.Sprintf(`{"event":"sync","gen":%d,"rank":%d,"step":%d,"from":%d}`, g.Gen, rank, w.st.Step, src))

	cfg := w.st.Cfg
	if w.trainStart.IsZero() {
		w.trainStart, w.trainStartStep = time.Now(), w.st.Step
	}
	np := len(w.st.Net.Params)
	if cap(w.buf) < np+2+world {
		w.buf = make([]float32, np+2+world)
	}
	w.buf = w.buf[:np+2+world]
	w.st.Net.Grads = w.buf[:np]
	B := float64(cfg.Batch)
	hashEvery := int64(w.spec.HashEvery)
	lastPub := time.Time{}
	window := time.Now()
	windowStep := w.st.Step
	for !w.st.Done() {
		if err := ctx.Err(); err != nil {
			return err
		}
		t0 := time.Now()
		lossSum, _ := w.st.ShardGradients(w.train, rank, world)
		compute := time.Since(t0)
		w.buf[np] = float32(lossSum)
		w.buf[np+1] = 0
		clear(w.buf[np+2:])
		w.buf[np+2+rank] = float32(compute.Seconds())
		// Vote to end the generation after this step: a newer one exists,
		// or this worker is stopping. Everyone sees the sum.
		stopping := w.isStopping()
		if g2 := w.latest.Load(); (g2 != nil && g2.Gen > g.Gen) || stopping {
			w.buf[np+1] = 1
		}
		t1 := time.Now()
		if err := ring.AllReduce(ctx, w.buf); err != nil {
			return fmt.Errorf("step %d: %w", w.st.Step, err)
		}
		comm := time.Since(t1)
		loss := float64(w.buf[np]) / B
		leave := w.buf[np+1] > 0
		if math.IsNaN(loss) || math.IsInf(loss, 0) {
			return fmt.Errorf("%w: loss is %v at step %d; lower --lr (now %v) or set --clip-norm", ErrReplicaMismatch, loss, w.st.Step, cfg.LR)
		}
		w.st.Apply()
		step := w.st.Step
		w.hist.AddLoss(step, loss)
		w.metrics.observeStep(step, w.st.Epoch(), loss, compute, comm, 4*len(w.buf), w.buf[np+2:])
		if w.steplog != nil {
			w.logLine(`{"event":"step","gen":` + strconv.FormatUint(g.Gen, 10) + `,"rank":` + strconv.Itoa(rank) +
				`,"step":` + strconv.FormatInt(step, 10) + `,"loss":` + strconv.FormatFloat(loss, 'g', -1, 64) + `}`)
		}

		if hashEvery > 0 && step%hashEvery == 0 {
			if err := w.checkReplicas(ctx, ring, rank, world, step); err != nil {
				return err
			}
		}
		epochEnd := step%int64(w.st.StepsPerEpoch) == 0
		var p coordinator.Progress
		if rank == 0 && (epochEnd || time.Since(lastPub) > 500*time.Millisecond) {
			now := time.Now()
			p = coordinator.Progress{Gen: g.Gen, Step: step, TotalSteps: w.st.TotalSteps, Epoch: w.st.Epoch(),
				Loss: loss, Workers: world, Time: now.UTC(), ComputeMs: make([]float64, world)}
			for r, v := range w.buf[np+2:] {
				p.ComputeMs[r] = math.Round(float64(v)*1e5) / 100
			}
			if dt := now.Sub(window).Seconds(); dt > 0 {
				p.SamplesPerSec = math.Round(float64(step-windowStep) * B / dt)
				w.metrics.SamplesPerSec.Set(p.SamplesPerSec)
			}
			window, windowStep, lastPub = now, step, now
			if epochEnd {
				w.lastEval[0], w.lastEval[1] = w.st.Evaluate(w.test)
				w.hist.AddEval(step, w.lastEval[0], w.lastEval[1])
				w.metrics.Accuracy.Set(w.lastEval[1])
				log.Info("epoch", zap.Int64("step", step), zap.Int("epoch", w.st.Epoch()-1),
					zap.Float64("loss", loss), zap.Float64("test_accuracy", w.lastEval[1]))
			}
			// The latest evaluation rides along with every update.
			p.TestLoss, p.TestAccuracy = w.lastEval[0], w.lastEval[1]
			w.prog.Publish(p)
		}
		if rank == 0 && cfg.CheckpointDir != "" && cfg.CheckpointEvery > 0 && step%int64(cfg.CheckpointEvery) == 0 && !w.st.Done() {
			w.ckpt.Snapshot(g.Gen, w.hist)
		}
		if stopping { // voted in this step's all-reduce: the ring ends here with us
			return errLeaving
		}
		if leave && !w.st.Done() {
			log.Info("leaving for a newer generation at a step boundary", zap.Int64("step", step))
			return errNewerGeneration
		}
	}
	return w.finish(ctx, g, rank, world)
}

// sync makes every replica's state identical at the start of a generation:
// the ranks agree on the most advanced state (the highest step; the lowest
// rank among equals) and that rank broadcasts it. A replica that applied
// the last step of a failed generation thus hands it on; none is repeated.
func (w *Worker) sync(ctx context.Context, ring *allreduce.Ring, rank, world int) (int, error) {
	steps := make([]float32, world)
	steps[rank] = float32(w.st.Step)
	if err := ring.AllReduce(ctx, steps); err != nil {
		return -1, err
	}
	src := 0
	for r, s := range steps {
		if s > steps[src] {
			src = r
		}
	}
	flat := w.st.FlatState()
	if err := ring.Broadcast(ctx, flat, src); err != nil {
		return -1, err
	}
	if rank != src {
		if err := w.st.SetFlatState(flat); err != nil {
			return -1, err
		}
		w.metrics.StateTransfers.Inc()
		w.catchUpHistory()
	}
	return src, nil
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

// finish ends the run: rank 0 evaluates, writes the final checkpoint,
// publishes it and marks the run done; the others wait for that (or for a
// newer generation, should rank 0 fail before it).
func (w *Worker) finish(ctx context.Context, g coordinator.Generation, rank, world int) error {
	if rank != 0 {
		done := w.run.WatchDone(ctx)
		for {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-w.stopping:
				return errLeaving
			case _, ok := <-done:
				if ok {
					return errFinished
				}
				done = nil
			case <-w.changed:
				if g2 := w.latest.Load(); g2 != nil && g2.Gen > g.Gen {
					return errNewerGeneration
				}
			}
		}
	}
	tl, acc := w.st.Evaluate(w.test)
	w.hist.AddEval(w.st.Step, tl, acc)
	sum := train.Summary{Step: w.st.Step, Epoch: int((w.st.Step - 1) / int64(w.st.StepsPerEpoch)),
		TestLoss: tl, TestAccuracy: acc, Workers: world}
	if n := len(w.hist.Loss); n > 0 {
		sum.TrainLoss = w.hist.Loss[n-1].Loss
	}
	if secs := time.Since(w.trainStart).Seconds(); !w.trainStart.IsZero() && secs > 0 {
		sum.Seconds = math.Round(secs*1000) / 1000
		sum.SamplesPerSec = math.Round(float64(w.st.Step-w.trainStartStep)*float64(w.st.Cfg.Batch)/secs*10) / 10
	}
	if w.st.Cfg.CheckpointDir != "" {
		dir, err := w.ckpt.SaveNow(ctx, g.Gen, w.hist)
		if err != nil {
			return err
		}
		sum.Checkpoint = dir
		if err := train.PlotHistory(*w.hist, filepath.Join(dir, train.PlotFile)); err != nil {
			w.log.Warn("plot", zap.Error(err))
		}
	}
	w.prog.Publish(coordinator.Progress{Gen: g.Gen, Step: w.st.Step, TotalSteps: w.st.TotalSteps, Epoch: w.st.Epoch(),
		Loss: sum.TrainLoss, TestLoss: tl, TestAccuracy: acc, Workers: world, Time: time.Now().UTC()})
	w.prog.Close()
	if err := w.run.MarkDone(ctx, sum); err != nil {
		return err
	}
	w.log.Info("run finished", zap.Int64("step", sum.Step), zap.Float64("test_accuracy", acc))
	return errFinished
}

func (w *Worker) logLine(s string) {
	if w.steplog != nil {
		w.steplog.WriteString(s + "\n")
	}
}

// advertise is the address peers dial: the flag if given, the listener's
// address if it is specific, else hostname:port.
func advertise(flag string, a net.Addr) string {
	if flag != "" {
		return flag
	}
	host, port, _ := net.SplitHostPort(a.String())
	if ip := net.ParseIP(host); ip != nil && !ip.IsUnspecified() {
		return a.String()
	}
	h, err := os.Hostname()
	if err != nil {
		h = "localhost"
	}
	return net.JoinHostPort(h, port)
}
