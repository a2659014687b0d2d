package coordinator

import (
	"cmp"
	"context"
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/ringtrain/ringtrain/checkpoint"
	"github.com/ringtrain/ringtrain/cluster"
	"github.com/ringtrain/ringtrain/train"
)

// The dashboard's page, script and style sheet: plain HTML, JavaScript and
// CSS, no external resources.
//
//go:embed web
var webFiles embed.FS

// Dashboard defaults.
const (
	// DefaultDashboardEvery is how often Run reads the run from etcd.
	DefaultDashboardEvery = 500 * time.Millisecond
	// MaxHistoryPoints caps the dashboard's curves; beyond it every other
	// point is dropped, so the curve stays evenly thinned.
	MaxHistoryPoints = 5000
	// DashboardEvents is how many recent events a snapshot carries.
	DashboardEvents = 50
)

// ProgressPoint is one point of the dashboard's curves.
type ProgressPoint struct {
	Step int64   `json:"step"`
	Loss float64 `json:"loss"`
	// TestLoss and TestAccuracy are the last evaluation's, 0 before the first.
	TestLoss      float64   `json:"test_loss,omitempty"`
	TestAccuracy  float64   `json:"test_accuracy,omitempty"`
	SamplesPerSec float64   `json:"samples_per_sec,omitempty"`
	Time          time.Time `json:"time,omitzero"`
}

// Snapshot is the run as the dashboard shows it: the run's state read
// from etcd (cluster.ReadSnapshot, with DashboardEvents events) and what
// this process adds to it. Its JSON is one flat object.
type Snapshot struct {
	cluster.Snapshot
	// IsLeader: this process leads.
	IsLeader bool `json:"is_leader"`
	// History is the loss and accuracy curve: the published progress
	// accumulated over time (one point per step seen, rewound when the
	// ring rolls back to a checkpoint), seeded from the first readable
	// checkpoint manifest's history when this process started mid-run.
	History []ProgressPoint `json:"history"`
	// Stale: the last read failed (Error says why); the rest is the last
	// good read.
	Stale bool   `json:"stale,omitempty"`
	Error string `json:"error,omitempty"`
}

// Dashboard polls a run's state in etcd and serves it: a web page, its
// JSON and Prometheus metrics. Create it with NewDashboard, run Run in a
// goroutine and mount Handler.
type Dashboard struct {
	// CheckpointRoot is the checkpoint root on this machine (the workers'
	// shared volume), if it has one: the dashboard then shows where the
	// latest checkpoint lies and seeds its curves from its manifest. Set it
	// before Run.
	CheckpointRoot string

	client      *cluster.Client
	isLeader    func() (bool, string)
	log         *zap.Logger
	pollTimeout time.Duration

	mu       sync.Mutex
	snap     Snapshot // without History
	hist     []ProgressPoint
	seeded   bool   // hist was seeded from a checkpoint manifest
	seedDir  string // the last checkpoint dir tried for seeding
	failing  bool   // the last poll failed (log transitions only)
	metrics  []*Metrics
	maxPoint int
}

// NewDashboard is a dashboard of run's state. isLeader, if not nil,
// reports whether this process leads and, if it knows, the leader's ID
// (which then wins over the election read from etcd). log may be nil.
func NewDashboard(run *cluster.Client, isLeader func() (bool, string), log *zap.Logger) *Dashboard {
	if log == nil {
		log = zap.NewNop()
	}
	return &Dashboard{
		client:      run,
		isLeader:    isLeader,
		log:         log.Named("dashboard"),
		pollTimeout: 3 * time.Second,
		snap:        Snapshot{Snapshot: cluster.Snapshot{Run: run.Run(), State: cluster.RunWaiting}, Stale: true, Error: "not read from etcd yet"},
		maxPoint:    MaxHistoryPoints,
	}
}

// Run polls etcd every `every` (DefaultDashboardEvery if <= 0) until ctx
// ends. A failed poll keeps the last good snapshot, marked stale.
func (d *Dashboard) Run(ctx context.Context, every time.Duration) {
	if every <= 0 {
		every = DefaultDashboardEvery
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		d.Poll(ctx) //nolint:errcheck // logged, and shown as stale
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Poll reads the run from etcd once (bounded), updates the snapshot and
// the history, and feeds the metrics.
func (d *Dashboard) Poll(ctx context.Context) error {
	rctx, cancel := context.WithTimeout(ctx, d.pollTimeout)
	s, err := d.read(rctx)
	cancel()
	if err == nil && s.Checkpoint != nil && d.CheckpointRoot != "" {
		d.seed(s.CheckpointPath)
	}

	d.mu.Lock()
	if err != nil {
		d.snap.Stale, d.snap.Error = true, err.Error()
		if d.isLeader != nil {
			d.snap.IsLeader, _ = d.isLeader()
		}
	} else {
		if s.Progress != nil {
			d.addPoint(ProgressPoint{Step: s.Progress.Step, Loss: s.Progress.Loss, TestLoss: s.Progress.TestLoss,
				TestAccuracy: s.Progress.TestAccuracy, SamplesPerSec: s.Progress.SamplesPerSec, Time: s.Progress.Time})
		}
		d.snap = s
	}
	wasFailing := d.failing
	d.failing = err != nil
	snap, observers := d.snap, slices.Clone(d.metrics)
	d.mu.Unlock()

	switch {
	case err != nil && !wasFailing && ctx.Err() == nil:
		d.log.Warn("cannot read the run from etcd; showing the last snapshot", zap.Error(err))
	case err == nil && wasFailing:
		d.log.Info("reading the run from etcd again")
	}
	for _, m := range observers {
		m.Observe(snap)
	}
	return err
}

// read builds a snapshot (without History) from etcd.
func (d *Dashboard) read(ctx context.Context) (Snapshot, error) {
	cs, err := cluster.ReadSnapshot(ctx, d.client, DashboardEvents)
	s := Snapshot{Snapshot: cs}
	if err != nil {
		return s, err
	}
	if d.isLeader != nil {
		var leader string
		if s.IsLeader, leader = d.isLeader(); leader != "" {
			s.Leader = leader
		}
	}
	if s.Checkpoint != nil && d.CheckpointRoot != "" {
		s.CheckpointPath = s.Checkpoint.Path(d.CheckpointRoot)
	}
	return s, nil
}

// addPoint appends p to the history: a repeated step replaces the last
// point, an earlier step (the ring rolled back to a checkpoint) rewinds the
// curve to it. Called with d.mu held.
func (d *Dashboard) addPoint(p ProgressPoint) {
	if n := len(d.hist); n > 0 {
		switch last := d.hist[n-1]; {
		case p.Step == last.Step:
			d.hist[n-1] = p
			return
		case p.Step < last.Step:
			i := sort.Search(n, func(i int) bool { return d.hist[i].Step >= p.Step })
			d.hist = d.hist[:i]
		}
	}
	d.hist = append(d.hist, p)
	d.hist = thinHistory(d.hist, d.maxPoint)
}

// thinHistory drops every other point (keeping the last) until at most max remain.
func thinHistory(pts []ProgressPoint, max int) []ProgressPoint {
	for len(pts) > max && max >= 2 {
		last := pts[len(pts)-1]
		kept := pts[:0]
		for i := 0; i < len(pts)-1; i += 2 {
			kept = append(kept, pts[i])
		}
		pts = append(kept, last)
	}
	return pts
}

// seed prepends the history stored in the manifest of the checkpoint in
// dir (the published checkpoint under the run spec's checkpoint root,
// readable when this process shares the checkpoint file system), so
// a coordinator that starts mid-run shows the whole curve. Best effort:
// each checkpoint is tried once.
func (d *Dashboard) seed(dir string) {
	d.mu.Lock()
	if d.seeded || dir == "" || dir == d.seedDir {
		d.mu.Unlock()
		return
	}
	d.seedDir = dir
	d.mu.Unlock()

	pts, err := manifestHistory(dir)
	if err != nil {
		d.log.Debug("no history from the checkpoint manifest", zap.String("dir", dir), zap.Error(err))
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.seeded = true
	if len(d.hist) > 0 {
		first := d.hist[0].Step
		i := sort.Search(len(pts), func(i int) bool { return pts[i].Step >= first })
		pts = pts[:i]
	}
	d.hist = thinHistory(append(pts, d.hist...), d.maxPoint)
}

// manifestHistory reads a checkpoint manifest's history as progress
// points: each training-loss point carries the last evaluation at or
// before its step, as published progress does.
func manifestHistory(dir string) ([]ProgressPoint, error) {
	raw, err := os.ReadFile(filepath.Join(dir, checkpoint.ManifestFile))
	if err != nil {
		return nil, err
	}
	var m struct {
		Metrics json.RawMessage `json:"metrics"`
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("decode %s: %w", checkpoint.ManifestFile, err)
	}
	var h train.History
	h.Load(m.Metrics)
	if len(h.Loss) == 0 {
		return nil, fmt.Errorf("%s holds no loss history", checkpoint.ManifestFile)
	}
	slices.SortFunc(h.Loss, func(a, b train.Point) int { return cmp.Compare(a.Step, b.Step) })
	slices.SortFunc(h.Eval, func(a, b train.EvalPoint) int { return cmp.Compare(a.Step, b.Step) })
	pts := make([]ProgressPoint, 0, len(h.Loss))
	e := 0
	var last *train.EvalPoint
	for _, p := range h.Loss {
		if !finiteFloat(p.Loss) {
			continue
		}
		for ; e < len(h.Eval) && h.Eval[e].Step <= p.Step; e++ {
			last = &h.Eval[e]
		}
		pt := ProgressPoint{Step: p.Step, Loss: p.Loss}
		if last != nil && finiteFloat(last.Loss) && finiteFloat(last.Accuracy) {
			pt.TestLoss, pt.TestAccuracy = last.Loss, last.Accuracy
		}
		if n := len(pts); n > 0 && pts[n-1].Step == pt.Step {
			pts[n-1] = pt
			continue
		}
		pts = append(pts, pt)
	}
	return pts, nil
}

func finiteFloat(f float64) bool { return f-f == 0 }

// Snapshot is the current snapshot, with the history.
func (d *Dashboard) Snapshot() Snapshot {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := d.snap
	s.History = slices.Clone(d.hist)
	if s.History == nil {
		s.History = []ProgressPoint{}
	}
	return s
}

// Handler serves the dashboard:
//
//	/              the page (polls /api/snapshot every second)
//	/static/...    its script and style sheet
//	/api/snapshot  the Snapshot as JSON
//	/metrics       m's Prometheus metrics (m is then fed by every poll)
//	/healthz       "ok"
//
// m may be nil (no /metrics).
func (d *Dashboard) Handler(m *Metrics) http.Handler {
	web, err := fs.Sub(webFiles, "web")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	index, err := fs.ReadFile(web, "index.html")
	if err != nil {
		panic(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-cache")
		w.Write(index) //nolint:errcheck // client went away
	})
	files := http.StripPrefix("/static/", http.FileServerFS(web))
	mux.HandleFunc("GET /static/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-cache")
		files.ServeHTTP(w, r)
	})
	mux.HandleFunc("GET /api/snapshot", func(w http.ResponseWriter, _ *http.Request) {
		b, err := json.Marshal(d.Snapshot())
		if err != nil {
			http.Error(w, "encode snapshot: "+err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.Write(b) //nolint:errcheck // client went away
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte("ok\n")) //nolint:errcheck // client went away
	})
	if m != nil {
		d.mu.Lock()
		if !slices.Contains(d.metrics, m) {
			d.metrics = append(d.metrics, m)
		}
		s := d.snap
		d.mu.Unlock()
		m.Observe(s)
		mux.Handle("GET /metrics", promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{}))
	}
	return mux
}
