package worker

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ringtrain/ringtrain/internal/httpauth"
)

// Metrics are a worker's Prometheus metrics, on a registry of its own so
// that several workers can live in one process (tests).
type Metrics struct {
	Registry *prometheus.Registry

	Step           prometheus.Gauge
	Epoch          prometheus.Gauge
	Loss           prometheus.Gauge
	Accuracy       prometheus.Gauge
	SamplesPerSec  prometheus.Gauge
	Generation     prometheus.Gauge
	Members        prometheus.Gauge
	Rank           prometheus.Gauge
	ComputeSeconds prometheus.Histogram
	AllReduceSecs  prometheus.Histogram
	AllReduceBytes prometheus.Counter
	Steps          prometheus.Counter
	RingFailures   prometheus.Counter
	StateTransfers prometheus.Counter
	CheckpointTime prometheus.Gauge
	// RankCompute is every rank's compute time of the last step, i.e. when
	// it arrived at the all-reduce; a straggler shows here before the
	// collective's wait hides it.
	RankCompute *prometheus.GaugeVec
	// ranks are RankCompute's gauges of the current generation, resolved
	// once per generation rather than by label on every step.
	ranks []prometheus.Gauge
}

// NewMetrics registers the worker's metrics on a new registry.
func NewMetrics() *Metrics {
	r := prometheus.NewRegistry()
	f := func(name, help string) prometheus.Gauge {
		g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "ringtrain_" + name, Help: help})
		r.MustRegister(g)
		return g
	}
	c := func(name, help string) prometheus.Counter {
		x := prometheus.NewCounter(prometheus.CounterOpts{Name: "ringtrain_" + name, Help: help})
		r.MustRegister(x)
		return x
	}
	h := func(name, help string) prometheus.Histogram {
		x := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "ringtrain_" + name, Help: help,
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)})
		r.MustRegister(x)
		return x
	}
	rankCompute := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "ringtrain_rank_compute_seconds",
		Help: "Each rank's compute time in the last step: its arrival at the gradient all-reduce."}, []string{"rank"})
	r.MustRegister(rankCompute)
	return &Metrics{
		Registry:       r,
		RankCompute:    rankCompute,
		Step:           f("step", "Optimizer steps applied."),
		Epoch:          f("epoch", "Current epoch."),
		Loss:           f("loss", "Training loss of the last step (global batch mean)."),
		Accuracy:       f("test_accuracy", "Test accuracy at the last evaluation."),
		SamplesPerSec:  f("samples_per_second", "Training throughput of the ring."),
		Generation:     f("generation", "Ring generation this worker trains in."),
		Members:        f("members", "Workers in the current ring."),
		Rank:           f("rank", "This worker's rank in the current ring."),
		ComputeSeconds: h("compute_seconds", "Forward and backward time per step on this rank (time to arrive at the all-reduce)."),
		AllReduceSecs:  h("allreduce_seconds", "Gradient all-reduce time per step, including waiting for slower ranks."),
		AllReduceBytes: c("allreduce_bytes_total", "Bytes of gradient reduced."),
		Steps:          c("steps_total", "Steps applied by this process."),
		RingFailures:   c("ring_failures_total", "Generations that failed on this worker."),
		StateTransfers: c("state_transfers_total", "Times this worker received the state from a peer."),
		CheckpointTime: f("checkpoint_timestamp_seconds", "Unix time of the last durable checkpoint written by this worker."),
	}
}

// resetRanks drops the previous generation's ranks and resolves the gauges
// of a ring of world ranks.
func (m *Metrics) resetRanks(world int) {
	m.RankCompute.Reset()
	m.ranks = m.ranks[:0]
	for r := 0; r < world; r++ {
		m.ranks = append(m.ranks, m.RankCompute.WithLabelValues(strconv.Itoa(r)))
	}
}

func (m *Metrics) observeStep(step int64, epoch int, loss float64, compute, comm time.Duration, bytes int, ranks []float32) {
	for r, v := range ranks {
		m.ranks[r].Set(float64(v))
	}
	m.Step.Set(float64(step))
	m.Epoch.Set(float64(epoch))
	m.Loss.Set(loss)
	m.ComputeSeconds.Observe(compute.Seconds())
	m.AllReduceSecs.Observe(comm.Seconds())
	m.AllReduceBytes.Add(float64(bytes))
	m.Steps.Inc()
}

// Handler serves /metrics and /healthz.
func (w *Worker) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(w.metrics.Registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(rw http.ResponseWriter, _ *http.Request) { rw.Write([]byte("ok\n")) })
	return httpauth.Guard(mux, w.cfg.HTTPToken)
}
