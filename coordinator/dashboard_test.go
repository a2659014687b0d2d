package coordinator

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image/png"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/checkpoint"
	"github.com/ringtrain/ringtrain/cluster"
	"github.com/ringtrain/ringtrain/train"
)

func TestDashboardHistoryPoints(t *testing.T) {
	d := &Dashboard{maxPoint: 8}
	steps := func() []int64 {
		var s []int64
		for _, p := range d.hist {
			s = append(s, p.Step)
		}
		return s
	}
	for _, s := range []int64{10, 20, 20, 30, 40} {
		d.addPoint(ProgressPoint{Step: s, Loss: float64(s)})
	}
	if got := steps(); !slices.Equal(got, []int64{10, 20, 30, 40}) {
		t.Fatalf("dedupe: %v", got)
	}
	// A rollback to a checkpoint rewinds the curve.
	d.addPoint(ProgressPoint{Step: 25})
	if got := steps(); !slices.Equal(got, []int64{10, 20, 25}) {
		t.Fatalf("rewind: %v", got)
	}
	for s := int64(30); s <= 100; s += 10 {
		d.addPoint(ProgressPoint{Step: s})
	}
	got := steps()
	if len(got) > 8 || got[0] != 10 || got[len(got)-1] != 100 || !slices.IsSorted(got) {
		t.Fatalf("thinned: %v, want at most 8 sorted points from 10 to 100", got)
	}
}

// dashFixture is a run in etcd with a spec, a 3-member generation, a
// standby worker, a coordinator, events, a checkpoint (named relative to
// the spec's checkpoint root) whose manifest holds the history of steps 0..40, and progress from step 60 to 200, polled into
// a dashboard served over HTTP.
type dashFixture struct {
	c    *cluster.Client
	d    *Dashboard
	m    *Metrics
	srv  *httptest.Server
	ctx  context.Context
	root string // the checkpoint root
}

func newDashFixture(t *testing.T) *dashFixture {
	t.Helper()
	e := startEtcd(t)
	c := newTestClient(t, e, "dash")
	ctx := testCtx(t, 60*time.Second)
	now := time.Now()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	spec := testSpec(2, 3)
	root := t.TempDir()
	_, err := c.PutSpecIfAbsent(ctx, spec)
	must(err)
	for i, id := range []string{"w1", "w2", "w3", "w4"} {
		must(put(ctx, c, cluster.KeyWorkers+id, cluster.WorkerInfo{ID: id, Addr: fmt.Sprintf("10.0.0.%d:7070", i+1), Started: now.Add(-time.Hour)}))
	}
	must(put(ctx, c, cluster.KeyCoordinators+"coord-a", cluster.CoordinatorInfo{ID: "coord-a", HTTP: "10.0.0.9:8080", Started: now}))
	must(put(ctx, c, cluster.KeyGeneration, cluster.Generation{Gen: 7, Reason: "w3 joined", Leader: "coord-a", Created: now,
		Members: []cluster.Member{{ID: "w3", Addr: "10.0.0.3:7070"}, {ID: "w1", Addr: "10.0.0.1:7070"}, {ID: "w2", Addr: "10.0.0.2:7070"}}}))
	for i, ev := range []cluster.Event{
		{Kind: "leader", Who: "coord-a", Gen: 6},
		{Kind: "joined", Who: "w1", Gen: 6}, {Kind: "joined", Who: "w2", Gen: 6}, {Kind: "joined", Who: "w3", Gen: 6},
		{Kind: "generation", Who: "coord-a", Gen: 7, Detail: "gen 7 [w3 w1 w2]: w3 joined"},
	} {
		ev.Time = now.Add(time.Duration(i-10) * time.Second)
		must(c.AddEvent(ctx, ev))
	}

	// A checkpoint whose manifest carries the first 40 steps' history.
	var h train.History
	for s := int64(0); s <= 40; s += 5 {
		h.AddLoss(s, 2.3-0.01*float64(s))
	}
	h.AddEval(20, 2.0, 0.35)
	metrics, err := json.Marshal(h)
	must(err)
	tensors := checkpoint.ModelTensors([]int{2, 2}, make([]float32, 6))
	dir, err := checkpoint.Save(root, checkpoint.Manifest{Step: 40, Metrics: metrics}, tensors, tensors)
	must(err)
	_, err = c.PublishCheckpoint(ctx, cluster.CheckpointRef{Step: 40, Dir: filepath.Base(dir), Gen: 7, Time: now.Add(-30 * time.Second), ParamsSHA256: "5e1f00d"})
	must(err)

	d := NewDashboard(c, func() (bool, string) { return true, "coord-a" }, nil)
	d.CheckpointRoot = root
	m := NewMetrics()
	srv := httptest.NewServer(d.Handler(m))
	t.Cleanup(srv.Close)
	for s := int64(60); s <= 200; s += 20 {
		p := cluster.Progress{Gen: 7, Step: s, TotalSteps: 400, Epoch: int(s / 100), Loss: 2 * math.Exp(-float64(s)/150),
			SamplesPerSec: 12345, Workers: 3, Time: time.Now()}
		if s >= 100 {
			p.TestLoss, p.TestAccuracy = 1.2, 0.5+float64(s)/500
		}
		must(c.PublishProgress(ctx, "w1", p))
		must(d.Poll(ctx))
	}
	return &dashFixture{c: c, d: d, m: m, srv: srv, ctx: ctx, root: root}
}

func (f *dashFixture) get(t *testing.T, path string) (string, http.Header) {
	t.Helper()
	req, err := http.NewRequestWithContext(f.ctx, http.MethodGet, f.srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s: %s", path, resp.Status, b)
	}
	return string(b), resp.Header
}

func (f *dashFixture) snapshot(t *testing.T) Snapshot {
	t.Helper()
	body, _ := f.get(t, "/api/snapshot")
	var s Snapshot
	if err := json.Unmarshal([]byte(body), &s); err != nil {
		t.Fatalf("decode /api/snapshot: %v\n%s", err, body)
	}
	return s
}

// metricValue is the value of an exact series line in a /metrics page.
func metricValue(t *testing.T, page, series string) string {
	t.Helper()
	for _, line := range strings.Split(page, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			return v
		}
	}
	t.Fatalf("/metrics has no %s", series)
	return ""
}

func TestDashboardHTTP(t *testing.T) {
	f := newDashFixture(t)

	s := f.snapshot(t)
	if s.Run != "dash" || s.State != cluster.RunTraining || s.Leader != "coord-a" || !s.IsLeader || s.Stale || s.Spec == nil {
		t.Errorf("snapshot header: run %q state %q leader %q is_leader %v stale %v (%s) spec %v",
			s.Run, s.State, s.Leader, s.IsLeader, s.Stale, s.Error, s.Spec != nil)
	}
	var members []string
	for _, m := range s.Members {
		members = append(members, fmt.Sprintf("%s/%d/%s", m.ID, m.Rank, m.State))
	}
	if got, want := strings.Join(members, " "), "w3/0/ring w1/1/ring w2/2/ring w4/-1/standby"; got != want {
		t.Errorf("members %q, want %q", got, want)
	}
	if s.Generation.Gen != 7 || len(s.Generation.Members) != 3 {
		t.Errorf("generation %v", s.Generation)
	}
	if s.Progress == nil || s.Progress.Step != 200 || s.Checkpoint == nil || s.Checkpoint.Step != 40 || s.Checkpoint.ParamsSHA256 != "5e1f00d" {
		t.Errorf("progress %+v checkpoint %+v", s.Progress, s.Checkpoint)
	}
	if want := filepath.Join(f.root, checkpoint.DirName(40)); s.CheckpointPath != want {
		t.Errorf("checkpoint path %q, want %q", s.CheckpointPath, want)
	}
	if len(s.Events) != 5 || s.Events[0].Kind != "generation" || s.Events[4].Kind != "leader" {
		t.Errorf("events (want 5, newest first): %+v", s.Events)
	}
	// History: steps 0..40 from the checkpoint manifest, then 60..200.
	var steps []int64
	for _, p := range s.History {
		steps = append(steps, p.Step)
	}
	want := []int64{0, 5, 10, 15, 20, 25, 30, 35, 40, 60, 80, 100, 120, 140, 160, 180, 200}
	if !slices.Equal(steps, want) {
		t.Errorf("history steps %v, want %v", steps, want)
	}
	if p := s.History[4]; p.TestAccuracy != 0.35 || s.History[3].TestAccuracy != 0 {
		t.Errorf("seeded evaluation: step 15 %+v, step 20 %+v", s.History[3], p)
	}
	if p := s.History[len(s.History)-1]; p.TestAccuracy != 0.9 || p.SamplesPerSec != 12345 {
		t.Errorf("last point %+v", p)
	}

	page, hdr := f.get(t, "/metrics")
	if !strings.HasPrefix(hdr.Get("Content-Type"), "text/plain") {
		t.Errorf("/metrics content type %q", hdr.Get("Content-Type"))
	}
	for series, want := range map[string]string{
		"ringtrain_generation":                             "7",
		"ringtrain_step":                                   "200",
		"ringtrain_total_steps":                            "400",
		"ringtrain_epoch":                                  "2",
		"ringtrain_samples_per_second":                     "12345",
		"ringtrain_test_accuracy":                          "0.9",
		"ringtrain_members":                                "3",
		"ringtrain_registered_workers":                     "4",
		"ringtrain_standby_workers":                        "1",
		"ringtrain_failed_members":                         "0",
		"ringtrain_coordinators":                           "1",
		"ringtrain_is_leader":                              "1",
		"ringtrain_done":                                   "0",
		"ringtrain_snapshot_stale":                         "0",
		"ringtrain_checkpoint_step":                        "40",
		"ringtrain_generations_total":                      "1",
		"ringtrain_worker_restarts_total":                  "0",
		`ringtrain_worker_rank{worker="w3"}`:               "0",
		`ringtrain_worker_rank{worker="w4"}`:               "-1",
		`ringtrain_membership_events_total{kind="joined"}`: "3",
	} {
		if got := metricValue(t, page, series); got != want {
			t.Errorf("%s = %s, want %s", series, got, want)
		}
	}
	if age, err := strconv.ParseFloat(metricValue(t, page, "ringtrain_checkpoint_age_seconds"), 64); err != nil || age < 29 || age > 90 {
		t.Errorf("ringtrain_checkpoint_age_seconds = %v (%v), want about 30", age, err)
	}

	// The page, its files and the health check.
	if body, hdr := f.get(t, "/"); !strings.Contains(body, `id="loss-curve"`) || !strings.HasPrefix(hdr.Get("Content-Type"), "text/html") {
		t.Errorf("/ is not the dashboard page (%s)", hdr.Get("Content-Type"))
	}
	if body, _ := f.get(t, "/static/app.js"); !strings.Contains(body, "api/snapshot") {
		t.Error("/static/app.js is not the dashboard script")
	}
	if _, hdr := f.get(t, "/static/style.css"); !strings.HasPrefix(hdr.Get("Content-Type"), "text/css") {
		t.Errorf("/static/style.css content type %q", hdr.Get("Content-Type"))
	}
	if body, _ := f.get(t, "/healthz"); body != "ok\n" {
		t.Errorf("/healthz = %q", body)
	}
	for _, p := range []string{"/nope", "/static/nope.js"} {
		resp, err := http.Get(f.srv.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: %s, want 404", p, resp.Status)
		}
	}
}

func TestDashboardRunRestartsAndStale(t *testing.T) {
	f := newDashFixture(t)
	ctx, cancel := context.WithCancel(f.ctx)
	stopped := make(chan struct{})
	go func() { defer close(stopped); f.d.Run(ctx, 20*time.Millisecond) }()
	t.Cleanup(func() { cancel(); <-stopped })

	// A worker restarts (new start time) and the ring moves on.
	if err := put(f.ctx, f.c, cluster.KeyWorkers+"w1", cluster.WorkerInfo{ID: "w1", Addr: "10.0.0.1:7070", Started: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if err := f.c.PublishProgress(f.ctx, "w1", cluster.Progress{Gen: 7, Step: 220, TotalSteps: 400, Loss: 0.5, Time: time.Now()}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		s := f.d.Snapshot()
		if s.Progress != nil && s.Progress.Step == 220 {
			if n := len(s.History); s.History[n-1].Step != 220 {
				t.Fatalf("history ends at %d", s.History[n-1].Step)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("Run did not pick up step 220")
		}
		time.Sleep(10 * time.Millisecond)
	}
	page, _ := f.get(t, "/metrics")
	if got := metricValue(t, page, "ringtrain_worker_restarts_total"); got != "1" {
		t.Errorf("ringtrain_worker_restarts_total = %s after w1 restarted, want 1", got)
	}
	cancel()
	<-stopped

	// etcd unreachable: the last snapshot stays, marked stale.
	f.c.Etcd().Close()
	if err := f.d.Poll(f.ctx); err == nil {
		t.Fatal("Poll with a closed etcd client: no error")
	}
	s := f.snapshot(t)
	if !s.Stale || s.Error == "" || len(s.Members) != 4 || s.Generation.Gen != 7 || len(s.History) == 0 {
		t.Errorf("stale snapshot: stale %v error %q members %d gen %d history %d", s.Stale, s.Error, len(s.Members), s.Generation.Gen, len(s.History))
	}
	page, _ = f.get(t, "/metrics")
	if got := metricValue(t, page, "ringtrain_snapshot_stale"); got != "1" {
		t.Errorf("ringtrain_snapshot_stale = %s, want 1", got)
	}
}

// chromiumPath finds Debian's chromium; without it the test is skipped,
// except in CI ($CI set), where it fails.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	missingTool(t, "chromium is not installed to load the dashboard", "apt-get install -y chromium")
	return ""
}

// runChromium runs headless Chromium on url with args and returns stdout;
// a script error on the page fails the test.
func runChromium(t *testing.T, ctx context.Context, bin, url string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	base := []string{
		"--headless", "--disable-gpu", "--no-sandbox", "--disable-dev-shm-usage",
		"--no-first-run", "--no-default-browser-check", "--disable-extensions", "--mute-audio",
		"--user-data-dir=" + t.TempDir(),
		"--virtual-time-budget=5000",
		"--enable-logging=stderr", "--v=0", // the page's console, to catch script errors
	}
	cmd := exec.CommandContext(ctx, bin, append(append(base, args...), url)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium %v: %v\n%s", args, err, stderr.String())
	}
	for _, line := range strings.Split(stderr.String(), "\n") {
		if strings.Contains(line, "CONSOLE") && (strings.Contains(line, "Uncaught") || strings.Contains(line, "Error")) {
			t.Errorf("script error on the page: %s", line)
		}
	}
	return stdout.String()
}

// element is the outer HTML of the first element with id in dom.
func element(t *testing.T, dom, tag, id string) string {
	t.Helper()
	loc := regexp.MustCompile(fmt.Sprintf(`<%s\b[^>]*\sid="%s"`, tag, regexp.QuoteMeta(id))).FindStringIndex(dom)
	if loc == nil {
		t.Fatalf("no <%s id=%q> in the DOM", tag, id)
	}
	start := loc[0]
	end := strings.Index(dom[start:], "</"+tag+">")
	if end < 0 {
		t.Fatalf("<%s id=%q> is not closed", tag, id)
	}
	return dom[start : start+end]
}

func TestDashboardChromium(t *testing.T) {
	bin := chromiumPath(t)
	f := newDashFixture(t)

	dom := runChromium(t, f.ctx, bin, f.srv.URL+"/", "--dump-dom")
	members := element(t, dom, "ul", "members")
	for _, want := range []string{
		`<li data-id="w3" data-state="ring" data-rank="0"`,
		`<li data-id="w1" data-state="ring" data-rank="1"`,
		`<li data-id="w2" data-state="ring" data-rank="2"`,
		`<li data-id="w4" data-state="standby" data-rank="-1"`,
	} {
		if !strings.Contains(members, want) {
			t.Errorf("members list lacks %s:\n%s", want, members)
		}
	}
	ring := element(t, dom, "svg", "ring")
	for _, id := range []string{"w1", "w2", "w3"} {
		if !strings.Contains(ring, fmt.Sprintf(`data-id="%s"`, id)) {
			t.Errorf("ring diagram lacks %s", id)
		}
	}
	points := regexp.MustCompile(`<polyline[^>]*points="([^"]*)"`)
	for _, tc := range []struct {
		id  string
		min int
	}{{"loss-curve", 17}, {"accuracy-curve", 6}} {
		m := points.FindStringSubmatch(element(t, dom, "svg", tc.id))
		if m == nil {
			t.Errorf("#%s has no polyline", tc.id)
			continue
		}
		if n := len(strings.Fields(m[1])); n < tc.min {
			t.Errorf("#%s polyline has %d points, want %d: %q", tc.id, n, tc.min, m[1])
		}
	}
	for _, tc := range []struct{ tag, id, want string }{
		{"div", "generation", ">7"},
		{"div", "step", ">200 / 400"},
		{"span", "state", ">training"},
		{"span", "leader", ">coord-a (this process)"},
	} {
		if el := element(t, dom, tc.tag, tc.id); !strings.HasSuffix(el, tc.want) {
			t.Errorf("#%s = %q, want text %q", tc.id, el, tc.want[1:])
		}
	}
	if events := element(t, dom, "table", "events"); strings.Count(events, "<tr data-kind=") != 5 {
		t.Errorf("events table:\n%s", events)
	}

	// w2 dies and the run finishes: the page follows.
	if _, err := f.c.Etcd().Delete(f.ctx, cluster.Key("dash", cluster.KeyWorkers+"w2")); err != nil {
		t.Fatal(err)
	}
	if _, err := f.c.MarkDone(f.ctx, train.Summary{Step: 400, Epoch: 4, TrainLoss: 0.21, TestLoss: 0.3, TestAccuracy: 0.93, Seconds: 61, Workers: 3}); err != nil {
		t.Fatal(err)
	}
	if err := f.d.Poll(f.ctx); err != nil {
		t.Fatal(err)
	}
	shot := filepath.Join(t.TempDir(), "dashboard.png")
	dom = runChromium(t, f.ctx, bin, f.srv.URL+"/", "--dump-dom")
	if members := element(t, dom, "ul", "members"); !strings.Contains(members, `<li data-id="w2" data-state="failed" data-rank="2"`) {
		t.Errorf("w2 is not shown failed:\n%s", members)
	}
	if st := element(t, dom, "span", "state"); !strings.HasSuffix(st, ">done") {
		t.Errorf("#state = %q, want done", st)
	}
	if done := element(t, dom, "section", "done"); strings.Contains(done, "hidden") || !strings.Contains(done, "93 %") {
		t.Errorf("#done = %q", done)
	}
	runChromium(t, f.ctx, bin, f.srv.URL+"/", "--screenshot="+shot, "--window-size=1280,1100", "--hide-scrollbars")
	if dst := os.Getenv("RINGTRAIN_DASHBOARD_PNG"); dst != "" { // to look at it
		if b, err := os.ReadFile(shot); err == nil {
			os.WriteFile(dst, b, 0o644) //nolint:errcheck // best effort
		}
	}
	fh, err := os.Open(shot)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	img, err := png.Decode(fh)
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if b := img.Bounds(); b.Dx() != 1280 || b.Dy() != 1100 {
		t.Errorf("screenshot is %v, want 1280×1100", b)
	}
	// The training-loss curve's blue (#1f77b4) and the ring's green are on it.
	found := map[string]bool{}
	for y := 0; y < img.Bounds().Dy(); y++ {
		for x := 0; x < img.Bounds().Dx(); x++ {
			r, g, b, _ := img.At(x, y).RGBA()
			switch [3]uint32{r >> 8, g >> 8, b >> 8} {
			case [3]uint32{0x1f, 0x77, 0xb4}:
				found["blue"] = true
			case [3]uint32{0x2c, 0xa0, 0x2c}:
				found["green"] = true
			}
		}
	}
	if !found["blue"] || !found["green"] {
		t.Errorf("screenshot lacks the curve colours: %v", found)
	}
}
