package coordinator

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ringtrain/ringtrain/cluster"
)

// Metrics are the run's Prometheus metrics as a coordinator sees them in
// etcd (the workers export their own, per process, including per-rank
// compute and all-reduce times). They live on a registry of their own so
// that several coordinators can share a process (tests, `ringtrain local`).
// Observe feeds them; the Dashboard does so after every poll.
type Metrics struct {
	Registry *prometheus.Registry

	Step            prometheus.Gauge
	TotalSteps      prometheus.Gauge
	Epoch           prometheus.Gauge
	Loss            prometheus.Gauge
	TestLoss        prometheus.Gauge
	TestAccuracy    prometheus.Gauge
	SamplesPerSec   prometheus.Gauge
	ProgressAge     prometheus.Gauge
	Generation      prometheus.Gauge
	Members         prometheus.Gauge
	Registered      prometheus.Gauge
	Standby         prometheus.Gauge
	Failed          prometheus.Gauge
	Coordinators    prometheus.Gauge
	IsLeader        prometheus.Gauge
	Done            prometheus.Gauge
	Stale           prometheus.Gauge
	CheckpointStep  prometheus.Gauge
	CheckpointAge   prometheus.Gauge
	WorkerRank      *prometheus.GaugeVec
	WorkerRestarts  prometheus.Counter
	Generations     prometheus.Counter
	MembershipEvent *prometheus.CounterVec

	mu        sync.Mutex
	started   map[string]time.Time // worker ID → Started of its last registration seen
	lastGen   uint64
	lastEvent time.Time // newest event counted
}

// NewMetrics registers the coordinator's metrics on a new registry.
func NewMetrics() *Metrics {
	r := prometheus.NewRegistry()
	g := func(name, help string) prometheus.Gauge {
		x := prometheus.NewGauge(prometheus.GaugeOpts{Name: "ringtrain_" + name, Help: help})
		r.MustRegister(x)
		return x
	}
	c := func(name, help string) prometheus.Counter {
		x := prometheus.NewCounter(prometheus.CounterOpts{Name: "ringtrain_" + name, Help: help})
		r.MustRegister(x)
		return x
	}
	rank := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "ringtrain_worker_rank",
		Help: "Rank of each registered or ring worker in the current generation (-1: standby)."}, []string{"worker"})
	events := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ringtrain_membership_events_total",
		Help: "Run events read from etcd by this process, by kind (joined, left, failed, generation, leader, ...)."}, []string{"kind"})
	r.MustRegister(rank, events)
	return &Metrics{
		Registry:        r,
		Step:            g("step", "Optimizer steps applied by the ring (last published progress)."),
		TotalSteps:      g("total_steps", "Steps the run trains in all."),
		Epoch:           g("epoch", "Current epoch."),
		Loss:            g("loss", "Training loss of the last published step (global batch mean)."),
		TestLoss:        g("test_loss", "Test loss at the last evaluation."),
		TestAccuracy:    g("test_accuracy", "Test accuracy at the last evaluation."),
		SamplesPerSec:   g("samples_per_second", "Training throughput of the ring."),
		ProgressAge:     g("progress_age_seconds", "Seconds since rank 0 last published progress (grows while the ring is stalled)."),
		Generation:      g("generation", "Current ring generation."),
		Members:         g("members", "Workers in the current ring."),
		Registered:      g("registered_workers", "Workers registered in etcd (ring and standby)."),
		Standby:         g("standby_workers", "Registered workers outside the current ring."),
		Failed:          g("failed_members", "Members of the current ring whose registration is gone (a new generation follows)."),
		Coordinators:    g("coordinators", "Coordinators registered in etcd."),
		IsLeader:        g("is_leader", "1 while this coordinator leads."),
		Done:            g("done", "1 once the run finished."),
		Stale:           g("snapshot_stale", "1 while this process cannot read the run from etcd (the values shown are the last read)."),
		CheckpointStep:  g("checkpoint_step", "Step of the newest durable checkpoint."),
		CheckpointAge:   g("checkpoint_age_seconds", "Seconds since the newest durable checkpoint was published."),
		WorkerRank:      rank,
		WorkerRestarts:  c("worker_restarts_total", "Worker processes that registered again under a known ID with a new start time."),
		Generations:     c("generations_total", "Ring generations seen by this process."),
		MembershipEvent: events,
		started:         map[string]time.Time{},
	}
}

// Observe sets the metrics from a snapshot of the run. Repeating a snapshot
// changes nothing; counters count changes between snapshots.
func (m *Metrics) Observe(s Snapshot) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := s.Time
	if now.IsZero() {
		now = time.Now()
	}
	if p := s.Progress; p != nil {
		m.Step.Set(float64(p.Step))
		m.TotalSteps.Set(float64(p.TotalSteps))
		m.Epoch.Set(float64(p.Epoch))
		m.Loss.Set(p.Loss)
		m.TestLoss.Set(p.TestLoss)
		m.TestAccuracy.Set(p.TestAccuracy)
		m.SamplesPerSec.Set(p.SamplesPerSec)
		if !p.Time.IsZero() {
			m.ProgressAge.Set(max(0, now.Sub(p.Time).Seconds()))
		}
	}
	if s.Done != nil {
		m.Step.Set(float64(s.Done.Step))
		m.Epoch.Set(float64(s.Done.Epoch))
		m.SamplesPerSec.Set(0)
		m.Done.Set(1)
	} else {
		m.Done.Set(0)
	}
	m.Generation.Set(float64(s.Generation.Gen))
	m.Members.Set(float64(len(s.Generation.Members)))
	m.Registered.Set(float64(len(s.Workers)))
	m.Coordinators.Set(float64(len(s.Coordinators)))
	m.IsLeader.Set(bool01(s.IsLeader))
	m.Stale.Set(bool01(s.Stale))
	if s.Checkpoint != nil {
		m.CheckpointStep.Set(float64(s.Checkpoint.Step))
		if !s.Checkpoint.Time.IsZero() {
			m.CheckpointAge.Set(max(0, now.Sub(s.Checkpoint.Time).Seconds()))
		}
	}

	var standby, failed int
	m.WorkerRank.Reset()
	for _, w := range s.Members {
		m.WorkerRank.WithLabelValues(w.ID).Set(float64(w.Rank))
		switch w.State {
		case cluster.MemberStandby:
			standby++
		case cluster.MemberFailed:
			failed++
		}
	}
	m.Standby.Set(float64(standby))
	m.Failed.Set(float64(failed))

	if s.Stale {
		return // the lists below are the last good read: already counted
	}
	for _, w := range s.Workers {
		if prev, ok := m.started[w.ID]; ok && !w.Started.Equal(prev) {
			m.WorkerRestarts.Inc()
		}
		m.started[w.ID] = w.Started
	}
	if g := s.Generation.Gen; g != m.lastGen && g != 0 {
		m.Generations.Inc()
		m.lastGen = g
	}
	newest := m.lastEvent
	for _, ev := range s.Events {
		if ev.Time.After(m.lastEvent) {
			m.MembershipEvent.WithLabelValues(ev.Kind).Inc()
			if ev.Time.After(newest) {
				newest = ev.Time
			}
		}
	}
	m.lastEvent = newest
}

func bool01(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
