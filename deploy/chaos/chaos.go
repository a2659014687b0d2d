// Package chaos is `ringtrain chaos`: fault scenarios against the
// docker-compose cluster.
//
// Each scenario brings up its own compose project (docker-compose.yml plus
// deploy/chaos/compose.yml, a unique -p name, so its own network and
// volumes), follows the run in etcd (whose client port the override
// publishes on 127.0.0.1) until it reaches the strike step, strikes (kill -9
// a worker, kill the leader coordinator, docker pause, network disconnect,
// etcd restart, a corrupt checkpoint, scaling), waits for the run to finish
// and checks: the run finished every step, the test accuracy met the target,
// the workers' step log has no gap and no repeat, and the replicas stayed
// identical (same loss at every step of a generation on every rank, and the
// coordinators' --hash-every never tripped). The project is removed with its
// volumes afterwards, whatever happened, Ctrl-C included.
package chaos

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"github.com/ringtrain/ringtrain/internal/usage"
	"io"
	"math"
	"math/rand"
	"net"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/ringtrain/ringtrain/coordinator"
	"github.com/ringtrain/ringtrain/train"
)

// chaosScenario is one named fault. strike runs once the ring has reached
// the strike step, and waits for the cluster's first reaction to the fault;
// after the run is done, the common checks run, then check (if any).
type chaosScenario struct {
	name   string
	about  string
	strike func(ctx context.Context, r *chaosRun) error
	check  func(ctx context.Context, r *chaosRun, a *chaosStepReport) error
}

var chaosScenarios = []chaosScenario{
	{name: "kill-worker", about: "docker kill -s KILL one worker: the survivors form the next generation and go on", strike: strikeKillWorker},
	{name: "kill-leader", about: "docker kill -s KILL the leading coordinator: the standby takes over", strike: strikeKillLeader},
	{name: "pause-worker", about: "docker pause one worker past the failure timeout, then unpause: the ring drops it, then takes it back", strike: strikePauseWorker},
	{name: "disconnect-worker", about: "docker network disconnect one worker, then reconnect it: the ring drops it, then takes it back", strike: strikeDisconnectWorker},
	{name: "restart-etcd", about: "docker restart etcd: training goes on", strike: strikeRestartEtcd},
	{name: "corrupt-checkpoint", about: "kill every worker and coordinator, flip bytes in the newest checkpoint, start them: the run resumes from the previous one", strike: strikeCorruptCheckpoint, check: checkCorruptCheckpoint},
	{name: "scale-up", about: "compose up --scale worker=5: the ring grows to five at a step boundary", strike: strikeScale(5)},
	{name: "scale-down", about: "compose up --scale worker=2: the ring shrinks to two", strike: strikeScale(2)},
}

func chaosScenarioNames() []string {
	names := make([]string, len(chaosScenarios))
	for i, s := range chaosScenarios {
		names[i] = s.name
	}
	return names
}

func findChaosScenario(name string) (chaosScenario, bool) {
	for _, s := range chaosScenarios {
		if s.name == name {
			return s, true
		}
	}
	return chaosScenario{}, false
}

// chaosOptions are the command's flags.
type chaosOptions struct {
	scenarios   string
	all, list   bool
	seed        int64
	strikeStep  int64
	composeFile string
	override    string
	project     string
	run         string
	target      float64
	timeout     time.Duration
	outage      time.Duration
	compose     string
	logsDir     string
	keep        bool
}

// chaosResult is what one scenario reports: one JSON line on stdout.
type chaosResult struct {
	Scenario     string   `json:"scenario"`
	Project      string   `json:"project"`
	Seed         int64    `json:"seed"`
	StrikeStep   int64    `json:"strike_step"`
	StruckAt     int64    `json:"struck_at"` // the ring's published step when the fault was injected
	Victim       string   `json:"victim,omitempty"`
	Steps        int64    `json:"steps"`
	TotalSteps   int64    `json:"total_steps"`
	TestAccuracy float64  `json:"test_accuracy"`
	Target       float64  `json:"target_accuracy"`
	Generations  []string `json:"generations"`
	StepLogLines int      `json:"step_log_lines"`
	FinalWorkers int      `json:"final_workers"`
	FinalLoss    float64  `json:"final_loss"`
	Notes        []string `json:"notes,omitempty"`
	Seconds      float64  `json:"seconds"`
	Passed       bool     `json:"passed"`
	Error        string   `json:"error,omitempty"`
}

// Summary is the command's one-line description.
const Summary = "run fault scenarios against the docker-compose cluster and check the run survives them"

// ScenarioNames are the scenarios, in the order --all runs them.
func ScenarioNames() []string { return chaosScenarioNames() }

// Command runs `ringtrain chaos` with args: name is the command's name for
// usage text; bad flags are *usage.Error.
func Command(ctx context.Context, name string, args []string, stdout, stderr io.Writer) error {
	summary := ("Runs fault scenarios against the docker-compose cluster (docker-compose.yml with\n" +
		"deploy/chaos/compose.yml), one fresh compose project each, and checks afterwards that the run\n" +
		"finished, met the accuracy target, applied every step exactly once and kept its replicas identical.\n" +
		"Build the images first (make images). Prints one JSON line per scenario; exit status 1 if any failed.\n\n" +
		"Scenarios: " + strings.Join(chaosScenarioNames(), ", "))
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: %s [flags]\n\n%s\n\nFlags:\n", name, summary)
		fs.PrintDefaults()
	}
	o := chaosOptions{}
	fs.StringVar(&o.scenarios, "scenario", "", "scenarios to run, comma-separated (see --list)")
	fs.BoolVar(&o.all, "all", false, "run every scenario")
	fs.BoolVar(&o.list, "list", false, "list the scenarios and exit")
	fs.Int64Var(&o.seed, "seed", 1, "seed of the training run and of the victim's choice")
	fs.Int64Var(&o.strikeStep, "strike-step", 500, "strike once the ring has published this step")
	fs.StringVar(&o.composeFile, "compose-file", "docker-compose.yml", "the cluster's compose file")
	fs.StringVar(&o.override, "override", "", "the chaos override compose file (default: deploy/chaos/compose.yml next to --compose-file)")
	fs.StringVar(&o.project, "project", "", "compose project name prefix; each scenario runs as PREFIX-SCENARIO (default: rtchaos-<random>)")
	fs.StringVar(&o.run, "run", "chaos", "run name (etcd prefix)")
	fs.Float64Var(&o.target, "target-accuracy", 0.95, "the test accuracy the run must reach")
	fs.DurationVar(&o.timeout, "timeout", 5*time.Minute, "time limit of one scenario, start to teardown")
	fs.DurationVar(&o.outage, "outage", 8*time.Second, "how long pause-worker and disconnect-worker keep the worker away (above --peer-timeout plus gossip's detection)")
	fs.StringVar(&o.compose, "compose", os.Getenv("COMPOSE"), "the Compose command (default: `docker compose` if present, else docker-compose)")
	fs.StringVar(&o.logsDir, "logs", "", "write each scenario's container logs and step log to this directory")
	fs.BoolVar(&o.keep, "keep", false, "leave each project up afterwards for inspection (you must `down -v` it)")
	if err := usage.ParseFlags(fs, args); err != nil {
		return err
	}
	if o.list {
		for _, s := range chaosScenarios {
			fmt.Fprintf(stdout, "%-20s %s\n", s.name, s.about)
		}
		return nil
	}
	var scs []chaosScenario
	switch {
	case o.all && o.scenarios != "":
		return usage.New("give --scenario or --all, not both")
	case o.all:
		scs = chaosScenarios
	case o.scenarios == "":
		return usage.New("no scenario: give --scenario NAME[,NAME...] or --all (--list lists them: " + strings.Join(chaosScenarioNames(), ", ") + ")")
	default:
		for _, n := range strings.Split(o.scenarios, ",") {
			n = strings.TrimSpace(n)
			s, ok := findChaosScenario(n)
			if !ok {
				return usage.Errorf("--scenario %q unknown; use one of %s", n, strings.Join(chaosScenarioNames(), ", "))
			}
			scs = append(scs, s)
		}
	}
	switch {
	case o.strikeStep < 1:
		return usage.Errorf("--strike-step %d must be at least 1", o.strikeStep)
	case o.target < 0 || o.target > 1:
		return usage.Errorf("--target-accuracy %v must be within [0, 1]", o.target)
	case o.timeout <= 0:
		return usage.Errorf("--timeout %v must be positive", o.timeout)
	case o.outage <= 0:
		return usage.Errorf("--outage %v must be positive", o.outage)
	}
	if o.project == "" {
		o.project = fmt.Sprintf("rtchaos-%06x", rand.Intn(1<<24))
	}
	if !validProject.MatchString(o.project) {
		return usage.Errorf("--project %q: use lower-case letters, digits and '-', starting with a letter", o.project)
	}
	var err error
	if o.composeFile, err = filepath.Abs(o.composeFile); err != nil {
		return err
	}
	if _, err := os.Stat(o.composeFile); err != nil {
		return usage.Errorf("--compose-file: %v; run chaos from the repository root or point it at docker-compose.yml", err)
	}
	if o.override == "" {
		o.override = filepath.Join(filepath.Dir(o.composeFile), "deploy", "chaos", "compose.yml")
	}
	if o.override, err = filepath.Abs(o.override); err != nil {
		return err
	}
	if _, err := os.Stat(o.override); err != nil {
		return usage.Errorf("--override: %v", err)
	}
	if o.logsDir != "" {
		if err := os.MkdirAll(o.logsDir, 0o755); err != nil {
			return err
		}
	}
	if err := chaosPreflight(ctx, &o); err != nil {
		return err
	}

	var failed []string
	for _, sc := range scs {
		if ctx.Err() != nil {
			break
		}
		res := runChaosScenario(ctx, stderr, o, sc)
		b, _ := json.Marshal(res)
		fmt.Fprintln(stdout, string(b))
		if !res.Passed {
			failed = append(failed, sc.name)
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if len(failed) > 0 {
		return fmt.Errorf("%d of %d scenarios failed: %s", len(failed), len(scs), strings.Join(failed, ", "))
	}
	return nil
}

var validProject = regexp.MustCompile(`^[a-z][a-z0-9-]*$`)

// chaosPreflight finds the Compose command and checks that the engine and
// the images are there, so that a missing piece is one clear line.
func chaosPreflight(ctx context.Context, o *chaosOptions) error {
	if _, err := exec.LookPath("docker"); err != nil {
		return errors.New("chaos needs the docker CLI and a running Docker engine: docker not found in PATH")
	}
	if out, err := exec.CommandContext(ctx, "docker", "version", "--format", "{{.Server.Version}}").CombinedOutput(); err != nil {
		return fmt.Errorf("chaos needs a running Docker engine: docker version: %v: %s", err, strings.TrimSpace(string(out)))
	}
	if o.compose == "" {
		if exec.CommandContext(ctx, "docker", "compose", "version").Run() == nil {
			o.compose = "docker compose"
		} else if _, err := exec.LookPath("docker-compose"); err == nil {
			o.compose = "docker-compose"
		} else {
			return errors.New("chaos needs Docker Compose: neither `docker compose` nor docker-compose is installed")
		}
	}
	for _, img := range []string{envOr("RINGTRAIN_IMAGE", "ringtrain:dev"), envOr("ETCD_IMAGE", "ringtrain-etcd:v3.7.3")} {
		if err := exec.CommandContext(ctx, "docker", "image", "inspect", img).Run(); err != nil {
			return fmt.Errorf("image %s not found; build the images first: make images", img)
		}
	}
	return nil
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// chaosRun is one scenario against one compose project.
type chaosRun struct {
	o       chaosOptions
	sc      chaosScenario
	project string
	env     []string
	log     io.Writer
	rng     *rand.Rand
	cli     *coordinator.Client
	res     *chaosResult

	mu       sync.Mutex
	gens     map[uint64]coordinator.Generation
	lastGen  coordinator.Generation
	progress coordinator.Progress
	done     *train.Summary

	// killed are containers the scenario left dead on purpose.
	killed map[string]bool
	// restartAt: the scenario killed every worker and coordinator and
	// started them again (corrupt-checkpoint) when the step log was this
	// many bytes long; -1 if it did not.
	restartAt int
	// resumeAt is the step the restarted ring must resume from.
	resumeAt int64
	// corrupt is the checkpoint directory the scenario corrupted.
	corrupt string

	namesMu   sync.Mutex
	hostNames map[string]string // worker ID (container hostname) → worker-N
}

func (r *chaosRun) logf(format string, args ...any) {
	fmt.Fprintf(r.log, "%s chaos %s: %s\n", time.Now().Format("15:04:05"), r.sc.name, fmt.Sprintf(format, args...))
}

func (r *chaosRun) note(format string, args ...any) {
	s := fmt.Sprintf(format, args...)
	r.logf("%s", s)
	r.mu.Lock()
	r.res.Notes = append(r.res.Notes, s)
	r.mu.Unlock()
}

func runChaosScenario(ctx context.Context, log io.Writer, o chaosOptions, sc chaosScenario) (res chaosResult) {
	start := time.Now()
	seed := o.seed
	for _, c := range sc.name {
		seed = seed*31 + int64(c)
	}
	r := &chaosRun{
		o: o, sc: sc, project: o.project + "-" + sc.name, log: log,
		rng:       rand.New(rand.NewSource(seed)),
		res:       &res,
		gens:      map[uint64]coordinator.Generation{},
		killed:    map[string]bool{},
		restartAt: -1,
	}
	res = chaosResult{Scenario: sc.name, Project: r.project, Seed: o.seed, StrikeStep: o.strikeStep, Target: o.target, Generations: []string{}}

	// Teardown whatever happens: a failed step, a panic, Ctrl-C (ctx).
	defer func() {
		if p := recover(); p != nil {
			res.Error = fmt.Sprintf("panic: %v", p)
			res.Passed = false
		}
		if len(res.Generations) == 0 {
			r.recordGenerations(r.polledMembers())
		}
		r.teardown(!res.Passed)
		res.Seconds = math.Round(time.Since(start).Seconds()*10) / 10
		verdict := "PASS"
		if !res.Passed {
			verdict = "FAIL: " + res.Error
		}
		r.logf("%s in %.0fs (steps %d/%d, accuracy %.4f, %d generations)", verdict, res.Seconds, res.Steps, res.TotalSteps, res.TestAccuracy, len(res.Generations))
	}()

	sctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	if err := r.execute(sctx); err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("interrupted: %w", err)
		} else if sctx.Err() != nil {
			err = fmt.Errorf("scenario timed out after %v: %w", o.timeout, err)
		}
		res.Error = err.Error()
		return res
	}
	res.Passed = true
	return res
}

// execute is the scenario: up, reach the strike step, strike, wait for the
// end, check.
func (r *chaosRun) execute(ctx context.Context) error {
	ports, err := chaosFreePorts(3)
	if err != nil {
		return err
	}
	r.env = append(os.Environ(),
		"RINGTRAIN_RUN="+r.o.run,
		"RINGTRAIN_CHAOS_SEED="+strconv.FormatInt(r.o.seed, 10),
		"RINGTRAIN_CHAOS_ETCD_PORT="+strconv.Itoa(ports[0]),
		"RINGTRAIN_HTTP_PORT="+strconv.Itoa(ports[1]),
		"RINGTRAIN_HTTP_PORT_2="+strconv.Itoa(ports[2]),
	)
	r.logf("compose project %s: up (etcd on 127.0.0.1:%d, dashboard http://127.0.0.1:%d/)", r.project, ports[0], ports[1])
	if _, err := r.composeCmd(ctx, "up", "-d"); err != nil {
		return err
	}
	if cs, err := r.containers(ctx, ""); err == nil {
		r.learnNames(cs)
	}
	cfg := coordinator.EtcdClientConfig([]string{fmt.Sprintf("http://127.0.0.1:%d", ports[0])}, zap.NewNop())
	ecli, err := clientv3.New(cfg)
	if err != nil {
		return fmt.Errorf("etcd client: %w", err)
	}
	defer ecli.Close()
	r.cli = coordinator.NewClient(ecli, r.o.run, zap.NewNop())
	fctx, stopFollow := context.WithCancel(ctx)
	defer stopFollow()
	go r.follow(fctx)

	// The strike step.
	_, err = r.waitFor(ctx, 3*time.Minute, fmt.Sprintf("the ring to reach step %d", r.o.strikeStep), func() (bool, error) {
		if r.done != nil {
			return false, fmt.Errorf("the run finished (step %d) before the strike step %d; lower --strike-step", r.done.Step, r.o.strikeStep)
		}
		return r.progress.Step >= r.o.strikeStep, nil
	})
	if err != nil {
		return err
	}
	r.res.StruckAt = r.snapshot().progress.Step
	r.res.TotalSteps = r.snapshot().progress.TotalSteps
	r.logf("strike at step %d of %d (%s)", r.res.StruckAt, r.res.TotalSteps, r.genString(r.snapshot().lastGen))
	if err := r.sc.strike(ctx, r); err != nil {
		return fmt.Errorf("strike: %w", err)
	}

	// The end of the run.
	if _, err := r.waitFor(ctx, r.o.timeout, "the run to finish", func() (bool, error) { return r.done != nil, nil }); err != nil {
		return err
	}
	sum := *r.snapshot().done
	r.res.Steps, r.res.TestAccuracy = sum.Step, sum.TestAccuracy
	if tp := r.snapshot().progress.TotalSteps; tp > 0 {
		r.res.TotalSteps = tp
	}
	r.logf("done: step %d, test accuracy %.4f, %d workers", sum.Step, sum.TestAccuracy, sum.Workers)
	// Workers exit once the run is done; their step log lines are then all written.
	if err := r.waitExited(ctx, 60*time.Second); err != nil {
		r.note("%v", err)
	}
	return r.checkAll(ctx, sum)
}

// checkAll runs the checks common to every scenario, then the scenario's.
func (r *chaosRun) checkAll(ctx context.Context, sum train.Summary) error {
	var errs []error
	if r.res.TotalSteps <= 0 {
		errs = append(errs, errors.New("no total step count in the run's progress"))
	} else if sum.Step != r.res.TotalSteps {
		errs = append(errs, fmt.Errorf("the run ended at step %d of %d", sum.Step, r.res.TotalSteps))
	}
	if sum.TestAccuracy < r.o.target {
		errs = append(errs, fmt.Errorf("test accuracy %.4f below the target %.4f", sum.TestAccuracy, r.o.target))
	}
	members := r.members(ctx)
	r.recordGenerations(members)

	raw, err := r.readVolumeFile(ctx, "/checkpoints/steps.jsonl")
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("step log: %w", err))...)
	}
	if r.o.logsDir != "" {
		os.WriteFile(filepath.Join(r.o.logsDir, r.sc.name+".steps.jsonl"), raw, 0o644)
	}
	var recs []chaosStep
	var bad int
	if r.restartAt >= 0 && r.restartAt <= len(raw) {
		// Lines from before the full restart, then from after it.
		recs, bad = parseChaosStepLog(raw[:r.restartAt], 0)
		after, bad1 := parseChaosStepLog(raw[r.restartAt:], 1)
		recs, bad = append(recs, after...), bad+bad1
	} else {
		recs, bad = parseChaosStepLog(raw, 0)
	}
	r.res.StepLogLines = len(recs)
	if bad > 0 {
		r.note("%d step log lines did not parse", bad)
	}
	rep, err := checkChaosStepLog(recs, members, r.res.TotalSteps, r.restartAt >= 0, r.resumeAt)
	if err != nil {
		errs = append(errs, fmt.Errorf("step log: %w", err))
	}
	if rep != nil {
		r.res.FinalWorkers, r.res.FinalLoss = rep.FinalRanks, rep.FinalLoss
	}
	if err := r.checkContainers(ctx); err != nil {
		errs = append(errs, err)
	}
	if r.sc.check != nil && rep != nil {
		if err := r.sc.check(ctx, r, rep); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// recordGenerations puts the rings of the run into the result.
func (r *chaosRun) recordGenerations(members map[uint64][]string) {
	gs := make([]uint64, 0, len(members))
	for g := range members {
		gs = append(gs, g)
	}
	sort.Slice(gs, func(i, j int) bool { return gs[i] < gs[j] })
	out := []string{}
	for _, g := range gs {
		out = append(out, fmt.Sprintf("gen %d [%s]", g, strings.Join(r.names(members[g]), " ")))
	}
	r.mu.Lock()
	r.res.Generations = out
	r.mu.Unlock()
}

// follow polls etcd: the generation (recording every one it sees), the
// progress and the final summary. Errors (etcd restarting) are skipped.
func (r *chaosRun) follow(ctx context.Context) {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		qctx, cancel := context.WithTimeout(ctx, time.Second)
		g, gok, gerr := r.cli.Generation(qctx)
		p, pok, perr := r.cli.Progress(qctx)
		s, sok, serr := r.cli.Done(qctx)
		cancel()
		r.mu.Lock()
		if gerr == nil && gok {
			if _, seen := r.gens[g.Gen]; !seen {
				r.gens[g.Gen] = g
				if len(g.Members) > 0 {
					fmt.Fprintf(r.log, "%s chaos %s: %s (%s, leader %s)\n", time.Now().Format("15:04:05"), r.sc.name,
						r.genString(g), g.Reason, g.Leader)
				}
			}
			r.lastGen = g
		}
		if perr == nil && pok {
			r.progress = p
		}
		if serr == nil && sok {
			r.done = &s
		}
		r.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

type chaosSnapshot struct {
	lastGen  coordinator.Generation
	progress coordinator.Progress
	done     *train.Summary
}

func (r *chaosRun) snapshot() chaosSnapshot {
	r.mu.Lock()
	defer r.mu.Unlock()
	return chaosSnapshot{lastGen: r.lastGen, progress: r.progress, done: r.done}
}

// waitFor polls cond (called with r.mu held) until it holds, fails, or
// within passes.
func (r *chaosRun) waitFor(ctx context.Context, within time.Duration, what string, cond func() (bool, error)) (chaosSnapshot, error) {
	deadline := time.Now().Add(within)
	for {
		r.mu.Lock()
		ok, err := cond()
		r.mu.Unlock()
		if err != nil {
			return chaosSnapshot{}, err
		}
		if ok {
			return r.snapshot(), nil
		}
		if time.Now().After(deadline) {
			s := r.snapshot()
			return s, fmt.Errorf("waited %v for %s; the ring is at step %d, %s", within, what, s.progress.Step, r.genString(s.lastGen))
		}
		select {
		case <-ctx.Done():
			return chaosSnapshot{}, fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// waitGeneration waits for a generation newer than after that satisfies ok;
// the run finishing first is an error.
func (r *chaosRun) waitGeneration(ctx context.Context, within time.Duration, what string, after uint64, ok func(coordinator.Generation) bool) (coordinator.Generation, error) {
	_, err := r.waitFor(ctx, within, what, func() (bool, error) {
		if r.done != nil {
			return false, fmt.Errorf("the run finished before %s", what)
		}
		for n, g := range r.gens {
			if n > after && len(g.Members) > 0 && ok(g) {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		return coordinator.Generation{}, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	var best coordinator.Generation
	for n, g := range r.gens {
		if n > after && len(g.Members) > 0 && ok(g) && (best.Gen == 0 || n < best.Gen) {
			best = g
		}
	}
	return best, nil
}

// members maps every generation of the run to its ring, from the
// generations seen while polling and the coordinators' "generation" events.
func (r *chaosRun) members(ctx context.Context) map[uint64][]string {
	out := map[uint64][]string{}
	qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	evs, err := r.cli.Events(qctx, 0)
	cancel()
	if err == nil {
		for _, ev := range evs {
			if ev.Kind != "generation" {
				continue
			}
			if g, ids, ok := parseGenerationString(ev.Detail); ok && len(ids) > 0 {
				out[g] = ids
			}
		}
	}
	for n, ids := range r.polledMembers() {
		out[n] = ids
	}
	return out
}

// polledMembers are the non-empty rings seen while polling.
func (r *chaosRun) polledMembers() map[uint64][]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[uint64][]string{}
	for n, g := range r.gens {
		if len(g.Members) == 0 {
			continue
		}
		ids := make([]string, len(g.Members))
		for i, m := range g.Members {
			ids[i] = m.ID
		}
		out[n] = ids
	}
	return out
}

var generationString = regexp.MustCompile(`^gen (\d+) \[([^\]]*)\]`)

// parseGenerationString reads Generation.String(): "gen 3 [w1 w2 w3]".
func parseGenerationString(s string) (uint64, []string, bool) {
	m := generationString.FindStringSubmatch(s)
	if m == nil {
		return 0, nil, false
	}
	g, err := strconv.ParseUint(m[1], 10, 64)
	if err != nil {
		return 0, nil, false
	}
	return g, strings.Fields(m[2]), true
}

// ---- docker and compose ----

func (r *chaosRun) composeArgs(args ...string) []string {
	c := strings.Fields(r.o.compose)
	return append(append(c[1:], "-p", r.project, "-f", r.o.composeFile, "-f", r.o.override), args...)
}

func (r *chaosRun) composeCmd(ctx context.Context, args ...string) (string, error) {
	c := strings.Fields(r.o.compose)
	return r.exec(ctx, c[0], r.composeArgs(args...)...)
}

func (r *chaosRun) docker(ctx context.Context, args ...string) (string, error) {
	return r.exec(ctx, "docker", args...)
}

func (r *chaosRun) exec(ctx context.Context, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = r.env
	cmd.Dir = filepath.Dir(r.o.composeFile)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, lastLines(out.String(), 10))
	}
	return out.String(), nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// chaosContainer is the part of `docker inspect` chaos reads.
type chaosContainer struct {
	ID           string `json:"Id"`
	Name         string `json:"Name"`
	RestartCount int    `json:"RestartCount"`
	State        struct {
		Status   string `json:"Status"`
		ExitCode int    `json:"ExitCode"`
		Paused   bool   `json:"Paused"`
		Running  bool   `json:"Running"`
	} `json:"State"`
	Config struct {
		Hostname string            `json:"Hostname"`
		Labels   map[string]string `json:"Labels"`
	} `json:"Config"`
	NetworkSettings struct {
		Networks map[string]struct {
			Aliases []string `json:"Aliases"`
		} `json:"Networks"`
	} `json:"NetworkSettings"`
}

func (c chaosContainer) service() string { return c.Config.Labels["com.docker.compose.service"] }

// label is the container's short name: worker-2, coordinator-1, etcd.
func (c chaosContainer) label() string {
	s := c.service()
	if s == "worker" {
		return s + "-" + c.Config.Labels["com.docker.compose.container-number"]
	}
	return s
}

// containers are the project's containers of service (all if ""), in
// container-number order.
func (r *chaosRun) containers(ctx context.Context, service string) ([]chaosContainer, error) {
	args := []string{"ps", "-aq", "--no-trunc", "--filter", "label=com.docker.compose.project=" + r.project}
	if service != "" {
		args = append(args, "--filter", "label=com.docker.compose.service="+service)
	}
	out, err := r.docker(ctx, args...)
	if err != nil {
		return nil, err
	}
	ids := strings.Fields(out)
	if len(ids) == 0 {
		return nil, nil
	}
	js, err := r.docker(ctx, append([]string{"inspect"}, ids...)...)
	if err != nil {
		return nil, err
	}
	var cs []chaosContainer
	if err := json.Unmarshal([]byte(js), &cs); err != nil {
		return nil, fmt.Errorf("docker inspect: %w", err)
	}
	sort.Slice(cs, func(i, j int) bool {
		if cs[i].service() != cs[j].service() {
			return cs[i].service() < cs[j].service()
		}
		a, _ := strconv.Atoi(cs[i].Config.Labels["com.docker.compose.container-number"])
		b, _ := strconv.Atoi(cs[j].Config.Labels["com.docker.compose.container-number"])
		return a < b
	})
	return cs, nil
}

// names turns worker IDs (container hostnames) into container labels for
// the report: worker-2 rather than 3f2c9a81b0d4.
func (r *chaosRun) names(ids []string) []string {
	out := make([]string, len(ids))
	r.namesMu.Lock()
	defer r.namesMu.Unlock()
	for i, id := range ids {
		if n, ok := r.hostNames[id]; ok {
			out[i] = n
		} else {
			out[i] = id
		}
	}
	return out
}

func (r *chaosRun) genString(g coordinator.Generation) string {
	ids := make([]string, len(g.Members))
	for i, m := range g.Members {
		ids[i] = m.ID
	}
	return fmt.Sprintf("gen %d [%s]", g.Gen, strings.Join(r.names(ids), " "))
}

// learnNames records the hostname → label of the project's containers.
func (r *chaosRun) learnNames(cs []chaosContainer) {
	r.namesMu.Lock()
	defer r.namesMu.Unlock()
	if r.hostNames == nil {
		r.hostNames = map[string]string{}
	}
	for _, c := range cs {
		r.hostNames[c.Config.Hostname] = c.label()
	}
}

// runningWorkers are the project's running, unpaused workers.
func (r *chaosRun) runningWorkers(ctx context.Context) ([]chaosContainer, error) {
	cs, err := r.containers(ctx, "worker")
	if err != nil {
		return nil, err
	}
	r.learnNames(cs)
	var out []chaosContainer
	for _, c := range cs {
		if c.State.Running && !c.State.Paused {
			out = append(out, c)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("no running worker container")
	}
	return out, nil
}

// pickWorker chooses the victim with the scenario's seed; it must be a
// member of the current ring.
func (r *chaosRun) pickWorker(ctx context.Context) (chaosContainer, error) {
	ws, err := r.runningWorkers(ctx)
	if err != nil {
		return chaosContainer{}, err
	}
	g := r.snapshot().lastGen
	var in []chaosContainer
	for _, w := range ws {
		if g.Rank(w.Config.Hostname) >= 0 {
			in = append(in, w)
		}
	}
	if len(in) == 0 {
		return chaosContainer{}, fmt.Errorf("no running worker is in %v", g)
	}
	v := in[r.rng.Intn(len(in))]
	r.res.Victim = v.label()
	return v, nil
}

// waitExited waits until no worker or coordinator container runs (they
// exit once the run is done).
func (r *chaosRun) waitExited(ctx context.Context, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		cs, err := r.containers(ctx, "")
		if err != nil {
			return err
		}
		r.learnNames(cs)
		var running []string
		for _, c := range cs {
			if c.service() != "etcd" && c.State.Running {
				running = append(running, c.label())
			}
		}
		if len(running) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("still running %v after the run finished: %s", within, strings.Join(running, ", "))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// checkContainers: no container exited with an error or restarted, except
// those the scenario killed.
func (r *chaosRun) checkContainers(ctx context.Context) error {
	cs, err := r.containers(ctx, "")
	if err != nil {
		return err
	}
	var bad []string
	for _, c := range cs {
		if r.killed[c.ID] {
			continue
		}
		if c.RestartCount > 0 || (!c.State.Running && c.State.ExitCode != 0) {
			bad = append(bad, fmt.Sprintf("%s (%s, exit %d, %d restarts)", c.label(), c.State.Status, c.State.ExitCode, c.RestartCount))
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("containers failed: %s", strings.Join(bad, "; "))
	}
	return nil
}

// readVolumeFile copies one file out of the checkpoints volume through any
// of the project's containers that mount it (stopped ones too).
func (r *chaosRun) readVolumeFile(ctx context.Context, p string) ([]byte, error) {
	tr, err := r.volumeTar(ctx, p)
	if err != nil {
		return nil, err
	}
	for {
		h, err := tr.Next()
		if err != nil {
			return nil, fmt.Errorf("%s: not in the volume: %w", p, err)
		}
		if h.Typeflag == tar.TypeReg {
			return io.ReadAll(tr)
		}
	}
}

// volumeTar is `docker cp CONTAINER:p -`, a tar stream, from a container
// that mounts the checkpoints volume.
func (r *chaosRun) volumeTar(ctx context.Context, p string) (*tar.Reader, error) {
	c, err := r.volumeContainer(ctx)
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, "docker", "cp", c+":"+p, "-")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("docker cp %s:%s: %v: %s", c, p, err, strings.TrimSpace(errb.String()))
	}
	return tar.NewReader(&out), nil
}

func (r *chaosRun) volumeContainer(ctx context.Context) (string, error) {
	cs, err := r.containers(ctx, "")
	if err != nil {
		return "", err
	}
	for _, c := range cs {
		if c.service() != "etcd" {
			return c.ID, nil
		}
	}
	return "", errors.New("no container of the project mounts the checkpoints volume")
}

// teardown removes the project: containers, network, volumes. It runs on a
// fresh context so that Ctrl-C (which ends ctx) still cleans up.
func (r *chaosRun) teardown(failed bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if r.o.logsDir != "" || failed {
		out, _ := r.composeCmd(ctx, "logs", "--no-color", "--timestamps")
		if r.o.logsDir != "" {
			os.WriteFile(filepath.Join(r.o.logsDir, r.sc.name+".log"), []byte(out), 0o644)
		}
		if failed {
			fmt.Fprintf(r.log, "--- %s: last container log lines ---\n%s\n", r.project, lastLines(out, 60))
		}
	}
	if r.o.keep {
		r.logf("--keep: project %s left up; remove it with: %s down -v --remove-orphans", r.project, strings.Join(append(strings.Fields(r.o.compose)[:1], r.composeArgs()...), " "))
		return
	}
	// A paused container cannot be stopped: unpause first.
	if cs, err := r.containers(ctx, ""); err == nil {
		for _, c := range cs {
			if c.State.Paused {
				r.docker(ctx, "unpause", c.ID)
			}
		}
	}
	if _, err := r.composeCmd(ctx, "down", "-v", "--remove-orphans", "-t", "5"); err != nil {
		r.logf("teardown: %v", err)
	}
	// Whatever compose left (it cannot see a service the files no longer
	// name): everything labelled with the project.
	if err := chaosRemoveProject(ctx, r.project); err != nil {
		r.logf("teardown: %v", err)
	}
}

// chaosRemoveProject removes every container, network and volume that
// carries the compose label of project, and reports what could not be.
func chaosRemoveProject(ctx context.Context, project string) error {
	label := "label=com.docker.compose.project=" + project
	list := func(args ...string) []string {
		out, _ := exec.CommandContext(ctx, "docker", args...).Output()
		return strings.Fields(string(out))
	}
	var errs []error
	rm := func(kind string, ids []string, args ...string) {
		if len(ids) == 0 {
			return
		}
		if out, err := exec.CommandContext(ctx, "docker", append(args, ids...)...).CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("remove %s %v: %v: %s", kind, ids, err, strings.TrimSpace(string(out))))
		}
	}
	rm("containers", list("ps", "-aq", "--filter", label), "rm", "-f", "-v")
	rm("networks", list("network", "ls", "-q", "--filter", label), "network", "rm")
	rm("volumes", list("volume", "ls", "-q", "--filter", label), "volume", "rm", "-f")
	return errors.Join(errs...)
}

func chaosFreePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ports []int
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// ---- scenarios ----

func strikeKillWorker(ctx context.Context, r *chaosRun) error {
	v, err := r.pickWorker(ctx)
	if err != nil {
		return err
	}
	before := r.snapshot().lastGen
	r.logf("kill -9 %s (%s)", v.label(), v.Config.Hostname)
	if _, err := r.docker(ctx, "kill", "--signal", "KILL", v.ID); err != nil {
		return err
	}
	r.killed[v.ID] = true
	g, err := r.waitGeneration(ctx, 30*time.Second, "a generation without "+v.label(), before.Gen, func(g coordinator.Generation) bool {
		return g.Rank(v.Config.Hostname) < 0
	})
	if err != nil {
		return err
	}
	r.note("%s killed at step %d; survivors formed %s", v.label(), r.res.StruckAt, r.genString(g))
	return nil
}

func strikeKillLeader(ctx context.Context, r *chaosRun) error {
	qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	leader, ok, err := r.cli.Leader(qctx)
	cancel()
	if err != nil || !ok {
		return fmt.Errorf("no leader coordinator in etcd (%v)", err)
	}
	cs, err := r.containers(ctx, leader)
	if err != nil {
		return err
	}
	if len(cs) != 1 || !cs[0].State.Running {
		return fmt.Errorf("the leader %q is not one running container of service %s", leader, leader)
	}
	r.res.Victim = leader
	stepBefore := r.snapshot().progress.Step
	r.logf("kill -9 the leader %s", leader)
	if _, err := r.docker(ctx, "kill", "--signal", "KILL", cs[0].ID); err != nil {
		return err
	}
	r.killed[cs[0].ID] = true
	start := time.Now()
	var next string
	for next == "" {
		qctx, cancel := context.WithTimeout(ctx, time.Second)
		l, ok, err := r.cli.Leader(qctx)
		cancel()
		switch {
		case err == nil && ok && l != leader:
			next = l
		case time.Since(start) > 45*time.Second:
			return fmt.Errorf("no new leader %v after %s was killed", time.Since(start).Round(time.Second), leader)
		case ctx.Err() != nil:
			return ctx.Err()
		default:
			time.Sleep(100 * time.Millisecond)
		}
	}
	r.note("leader %s killed at step %d; %s leads after %.1fs", leader, r.res.StruckAt, next, time.Since(start).Seconds())
	// Training goes on under the new leader.
	_, err = r.waitFor(ctx, 60*time.Second, "progress after the leader's death", func() (bool, error) {
		return r.done != nil || r.progress.Step > stepBefore+50, nil
	})
	return err
}

func strikePauseWorker(ctx context.Context, r *chaosRun) error {
	v, err := r.pickWorker(ctx)
	if err != nil {
		return err
	}
	before := r.snapshot().lastGen
	r.logf("docker pause %s for %v", v.label(), r.o.outage)
	if _, err := r.docker(ctx, "pause", v.ID); err != nil {
		return err
	}
	paused := time.Now()
	g, err := r.waitGeneration(ctx, r.o.outage, "a generation without the paused "+v.label(), before.Gen, func(g coordinator.Generation) bool {
		return g.Rank(v.Config.Hostname) < 0
	})
	if uerr := r.endOutage(ctx, paused, "unpause", v.ID); uerr != nil {
		return uerr
	}
	if err != nil {
		return err
	}
	r.note("%s paused at step %d; the ring went on as %s after %.1fs", v.label(), r.res.StruckAt, r.genString(g), g.Created.Sub(paused).Seconds())
	return r.waitRejoin(ctx, v, g.Gen)
}

// endOutage waits until the outage begun at since has lasted r.o.outage (or
// ctx ends), then runs docker args to undo it, even after ctx's end but for
// at most a minute.
func (r *chaosRun) endOutage(ctx context.Context, since time.Time, args ...string) error {
	if rest := r.o.outage - time.Since(since); rest > 0 {
		select {
		case <-ctx.Done():
		case <-time.After(rest):
		}
	}
	uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	_, err := r.docker(uctx, args...)
	return err
}

// waitRejoin waits for a generation after gen that has v again.
func (r *chaosRun) waitRejoin(ctx context.Context, v chaosContainer, gen uint64) error {
	back := time.Now()
	g, err := r.waitGeneration(ctx, 90*time.Second, v.label()+" to rejoin the ring", gen, func(g coordinator.Generation) bool {
		return g.Rank(v.Config.Hostname) >= 0
	})
	if err != nil {
		return err
	}
	r.note("%s rejoined in %s %.1fs after it came back", v.label(), r.genString(g), time.Since(back).Seconds())
	return nil
}

func strikeDisconnectWorker(ctx context.Context, r *chaosRun) error {
	v, err := r.pickWorker(ctx)
	if err != nil {
		return err
	}
	if len(v.NetworkSettings.Networks) != 1 {
		return fmt.Errorf("%s is on %d networks, want 1", v.label(), len(v.NetworkSettings.Networks))
	}
	var network string
	var aliases []string
	for n, s := range v.NetworkSettings.Networks {
		network, aliases = n, s.Aliases
	}
	before := r.snapshot().lastGen
	r.logf("docker network disconnect %s %s for %v", network, v.label(), r.o.outage)
	if _, err := r.docker(ctx, "network", "disconnect", network, v.ID); err != nil {
		return err
	}
	off := time.Now()
	g, err := r.waitGeneration(ctx, r.o.outage, "a generation without the disconnected "+v.label(), before.Gen, func(g coordinator.Generation) bool {
		return g.Rank(v.Config.Hostname) < 0
	})
	args := []string{"network", "connect"}
	for _, a := range aliases {
		if a != v.Config.Hostname && !strings.HasPrefix(v.ID, a) { // docker adds the short ID itself
			args = append(args, "--alias", a)
		}
	}
	if cerr := r.endOutage(ctx, off, append(args, network, v.ID)...); cerr != nil {
		return cerr
	}
	if err != nil {
		return err
	}
	r.note("%s disconnected at step %d; the ring went on as %s after %.1fs", v.label(), r.res.StruckAt, r.genString(g), g.Created.Sub(off).Seconds())
	return r.waitRejoin(ctx, v, g.Gen)
}

func strikeRestartEtcd(ctx context.Context, r *chaosRun) error {
	cs, err := r.containers(ctx, "etcd")
	if err != nil {
		return err
	}
	if len(cs) != 1 {
		return fmt.Errorf("%d etcd containers, want 1", len(cs))
	}
	r.res.Victim = "etcd"
	before := r.snapshot()
	r.logf("docker restart etcd")
	start := time.Now()
	if _, err := r.docker(ctx, "restart", "-t", "5", cs[0].ID); err != nil {
		return err
	}
	took := time.Since(start)
	// etcd answers again and the ring publishes progress past the strike.
	s, err := r.waitFor(ctx, 60*time.Second, "progress after the etcd restart", func() (bool, error) {
		return r.done != nil || (r.progress.Time.After(start.Add(took)) && r.progress.Step > before.progress.Step), nil
	})
	if err != nil {
		return err
	}
	r.note("etcd restarted at step %d in %.1fs; progress resumed at step %d, %s", r.res.StruckAt, took.Seconds(), s.progress.Step, r.genString(s.lastGen))
	return nil
}

func strikeScale(n int) func(ctx context.Context, r *chaosRun) error {
	return func(ctx context.Context, r *chaosRun) error {
		before := r.snapshot().lastGen
		r.logf("compose up -d --scale worker=%d", n)
		if _, err := r.composeCmd(ctx, "up", "-d", "--no-recreate", "--scale", fmt.Sprintf("worker=%d", n), "worker"); err != nil {
			return err
		}
		ws, err := r.containers(ctx, "worker")
		if err == nil {
			r.learnNames(ws)
		}
		start := time.Now()
		g, err := r.waitGeneration(ctx, 90*time.Second, fmt.Sprintf("a generation of %d workers", n), before.Gen, func(g coordinator.Generation) bool {
			return len(g.Members) == n
		})
		if err != nil {
			return err
		}
		r.note("scaled from %d to %d workers at step %d: %s (%s) %.1fs later", len(before.Members), n, r.res.StruckAt, r.genString(g), g.Reason, time.Since(start).Seconds())
		return nil
	}
}

func strikeCorruptCheckpoint(ctx context.Context, r *chaosRun) error {
	cs, err := r.containers(ctx, "")
	if err != nil {
		return err
	}
	r.learnNames(cs)
	// Every worker and coordinator dies at once (a power cut); etcd stays.
	var procs, coords, workers []string
	for _, c := range cs {
		switch c.service() {
		case "etcd":
		case "worker":
			workers = append(workers, c.ID)
		default:
			coords = append(coords, c.ID)
		}
	}
	procs = append(append(procs, workers...), coords...)
	r.res.Victim = "every worker and coordinator"
	r.logf("kill -9 every worker and coordinator (%d containers)", len(procs))
	if _, err := r.docker(ctx, append([]string{"kill", "--signal", "KILL"}, procs...)...); err != nil {
		return err
	}
	stoppedAt := r.snapshot().progress.Step
	// Where the step log's second life starts: every writer is dead.
	before, err := r.readVolumeFile(ctx, "/checkpoints/steps.jsonl")
	if err != nil {
		return err
	}
	r.restartAt = len(before)

	tr, err := r.volumeTar(ctx, "/checkpoints")
	if err != nil {
		return err
	}
	newest, prev, model, err := newestCheckpoints(tr)
	if err != nil {
		return err
	}
	corrupt := corruptBytes(model)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: "model.safetensors", Mode: 0o644, Size: int64(len(corrupt)), ModTime: time.Now(), Uid: 65532, Gid: 65532, Typeflag: tar.TypeReg})
	tw.Write(corrupt)
	tw.Close()
	dest := coords[0] + ":/checkpoints/" + newest
	cmd := exec.CommandContext(ctx, "docker", "cp", "-", dest)
	cmd.Stdin = &buf
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("docker cp - %s: %v: %s", dest, err, strings.TrimSpace(string(out)))
	}
	back, err := r.readVolumeFile(ctx, "/checkpoints/"+newest+"/model.safetensors")
	if err != nil {
		return err
	}
	if !bytes.Equal(back, corrupt) {
		return fmt.Errorf("%s/model.safetensors did not change on the volume", newest)
	}
	r.corrupt = newest
	r.resumeAt, _ = strconv.ParseInt(strings.TrimPrefix(prev, "step-"), 10, 64)
	r.note("all processes killed at step %d; corrupted %s/model.safetensors (%d bytes flipped); expecting a resume from %s", stoppedAt, newest, len(model)-countEqual(model, corrupt), prev)

	r.logf("docker start the coordinators, then the workers")
	if _, err := r.docker(ctx, append([]string{"start"}, coords...)...); err != nil {
		return err
	}
	if _, err := r.docker(ctx, append([]string{"start"}, workers...)...); err != nil {
		return err
	}
	restarted := time.Now()
	s, err := r.waitFor(ctx, 90*time.Second, "progress after the restart", func() (bool, error) {
		return r.done != nil || r.progress.Time.After(restarted), nil
	})
	if err != nil {
		return err
	}
	r.note("restarted %.1fs ago: the ring is at step %d, %s", time.Since(restarted).Seconds(), s.progress.Step, r.genString(s.lastGen))
	return nil
}

func checkCorruptCheckpoint(ctx context.Context, r *chaosRun, a *chaosStepReport) error {
	var errs []error
	if a.ResumedAt != r.resumeAt {
		errs = append(errs, fmt.Errorf("the restarted ring resumed at step %d, want the newest valid checkpoint's %d", a.ResumedAt, r.resumeAt))
	}
	ws, err := r.containers(ctx, "worker")
	if err != nil {
		return err
	}
	warned := 0
	for _, w := range ws {
		out, _ := r.docker(ctx, "logs", w.ID)
		for _, line := range strings.Split(out, "\n") {
			if strings.Contains(line, "corrupt") && strings.Contains(line, r.corrupt) {
				warned++
				break
			}
		}
	}
	if warned == 0 {
		errs = append(errs, fmt.Errorf("no worker's log warns about the corrupt checkpoint %s", r.corrupt))
	} else {
		r.note("%d of %d workers warned that %s is corrupt; the ring resumed at step %d", warned, len(ws), r.corrupt, a.ResumedAt)
	}
	if a.Reapplied > 0 {
		r.note("%d of the %d steps applied before the stop and again after it had the same loss bit for bit", a.Reproduced, a.Reapplied)
	}
	return errors.Join(errs...)
}

// newestCheckpoints reads a tar of the checkpoint directory: the newest
// complete checkpoint (with a manifest), the one before it, and the newest's
// model.safetensors.
func newestCheckpoints(tr *tar.Reader) (newest, prev string, model []byte, err error) {
	complete := map[string]bool{}
	models := map[string][]byte{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return "", "", nil, err
		}
		parts := strings.Split(path.Clean(h.Name), "/")
		if len(parts) < 2 {
			continue
		}
		dir, file := parts[len(parts)-2], parts[len(parts)-1]
		if !strings.HasPrefix(dir, "step-") {
			continue
		}
		switch file {
		case "manifest.json":
			complete[dir] = true
		case "model.safetensors":
			b, err := io.ReadAll(tr)
			if err != nil {
				return "", "", nil, err
			}
			models[dir] = b
		}
	}
	var dirs []string
	for d := range complete {
		if models[d] != nil {
			dirs = append(dirs, d)
		}
	}
	sort.Strings(dirs)
	if len(dirs) < 2 {
		return "", "", nil, fmt.Errorf("%d complete checkpoints (%v) when every process was killed, want 2: strike later (--strike-step) or checkpoint more often", len(dirs), dirs)
	}
	newest, prev = dirs[len(dirs)-1], dirs[len(dirs)-2]
	return newest, prev, models[newest], nil
}

// corruptBytes returns b with 16 bytes in the middle of its data flipped.
func corruptBytes(b []byte) []byte {
	out := append([]byte(nil), b...)
	for i := len(out) / 2; i < len(out)/2+16 && i < len(out); i++ {
		out[i] ^= 0x55
	}
	return out
}

func countEqual(a, b []byte) int {
	n := 0
	for i := range a {
		if i < len(b) && a[i] == b[i] {
			n++
		}
	}
	return n
}

// ---- the step log ----

// chaosStep is one line of a worker's step log (worker --step-log).
type chaosStep struct {
	Event string  `json:"event"`
	Gen   uint64  `json:"gen"`
	Rank  int     `json:"rank"`
	Step  int64   `json:"step"`
	From  int     `json:"from"`
	Loss  float64 `json:"loss"`
	// phase is 1 for lines written after a full restart, else 0.
	phase int
}

// parseChaosStepLog parses (part of) the shared step log, marking every
// record with phase; bad counts lines that are not step log JSON.
func parseChaosStepLog(b []byte, phase int) (recs []chaosStep, bad int) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		var r chaosStep
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil || (r.Event != "step" && r.Event != "sync") {
			bad++
			continue
		}
		r.phase = phase
		recs = append(recs, r)
	}
	return recs, bad
}

// chaosStepReport is what the step log check found.
type chaosStepReport struct {
	Workers    int     // distinct workers that logged
	Applied    int     // distinct steps applied
	FinalGen   uint64  // the last generation that trained
	FinalRanks int     // ranks of FinalGen that applied the last step
	FinalLoss  float64 // their loss at the last step
	ResumedAt  int64   // after a full restart: the lowest step a rank synced to (-1: no restart)
	// After a full restart: steps applied before and again after it, and
	// how many of those had the very same loss (bit for bit).
	Reapplied, Reproduced int
}

// checkChaosStepLog checks the workers' shared step log. members maps a
// generation to its ring (rank → worker ID) so that each worker's lines can
// be followed across generations; a generation missing from it is checked
// per rank. Within a worker every applied step is the one after its state
// (no gap, no repeat), and a state transfer never moves a worker back to
// before a step it applied (a repeat) — except across a full restart
// (restarted: every process was killed and started again; records carry
// their phase, 0 before and 1 after), where the ring must resume from
// resumeAt. Together the workers applied every
// step up to total; ranks of one generation that applied a step saw the same
// loss (identical replicas), and every rank of the last generation applied
// the last step with the same loss.
func checkChaosStepLog(recs []chaosStep, members map[uint64][]string, total int64, restarted bool, resumeAt int64) (*chaosStepReport, error) {
	rep := &chaosStepReport{ResumedAt: -1}
	if len(recs) == 0 {
		return rep, errors.New("empty: no worker logged a step")
	}
	who := func(r chaosStep) string {
		if ids, ok := members[r.Gen]; ok && r.Rank >= 0 && r.Rank < len(ids) {
			return ids[r.Rank]
		}
		return fmt.Sprintf("gen %d rank %d", r.Gen, r.Rank)
	}
	// Each worker's lines in generation order (the file keeps each
	// process's own order within a generation).
	type key struct {
		phase int
		id    string
	}
	byWorker := map[key][]chaosStep{}
	var order []key
	ids := map[string]bool{}
	for _, r := range recs {
		k := key{r.phase, who(r)}
		if _, ok := byWorker[k]; !ok {
			order = append(order, k)
		}
		byWorker[k] = append(byWorker[k], r)
		ids[k.id] = true
	}
	rep.Workers = len(ids)
	var errs []error
	fail := func(format string, args ...any) {
		if len(errs) < 10 {
			errs = append(errs, fmt.Errorf(format, args...))
		}
	}
	applied := [2]map[int64]bool{{}, {}}
	loss := map[[3]int64]float64{}
	for _, k := range order {
		rs := byWorker[k]
		sort.SliceStable(rs, func(i, j int) bool { return rs[i].Gen < rs[j].Gen })
		state := int64(-1) // unknown until the first sync
		var stateGen uint64
		for _, r := range rs {
			switch r.Event {
			case "sync":
				if state >= 0 && r.Step < state {
					fail("%s: the state transfer of gen %d moved it back from step %d (applied in gen %d) to %d: steps %d..%d would be applied twice", k.id, r.Gen, state, stateGen, r.Step, r.Step+1, state)
				}
				state, stateGen = r.Step, r.Gen
				if k.phase == 1 && (rep.ResumedAt < 0 || r.Step < rep.ResumedAt) {
					rep.ResumedAt = r.Step
				}
			case "step":
				switch {
				case state >= 0 && r.Step == state:
					fail("%s: applied step %d twice (gen %d)", k.id, r.Step, r.Gen)
				case state >= 0 && r.Step < state:
					fail("%s: applied step %d in gen %d with its state at step %d: a repeat", k.id, r.Step, r.Gen, state)
				case state >= 0 && r.Step > state+1:
					fail("%s: applied step %d in gen %d with its state at step %d: steps %d..%d skipped", k.id, r.Step, r.Gen, state, state+1, r.Step-1)
				}
				state, stateGen = r.Step, r.Gen
				applied[k.phase][r.Step] = true
				lk := [3]int64{int64(k.phase), int64(r.Gen), r.Step}
				if l, ok := loss[lk]; ok && l != r.Loss {
					fail("step %d of gen %d: loss %v on %s, %v on another rank: the replicas differ", r.Step, r.Gen, r.Loss, k.id, l)
				}
				loss[lk] = r.Loss
			}
		}
	}
	gaps := func(ph int, from, to int64) {
		var missing []string
		for s := from; s <= to; s++ {
			if !applied[ph][s] {
				missing = append(missing, strconv.FormatInt(s, 10))
			}
		}
		if len(missing) > 0 {
			if len(missing) > 10 {
				missing = append(missing[:10], fmt.Sprintf("… (%d in all)", len(missing)))
			}
			fail("steps %d..%d: never applied by any worker: %s", from, to, strings.Join(missing, " "))
		}
	}
	all := map[int64]bool{}
	for ph := range applied {
		for s := range applied[ph] {
			all[s] = true
		}
	}
	rep.Applied = len(all)
	last := 0
	if restarted {
		last = 1
		var last0 int64
		for s := range applied[0] {
			last0 = max(last0, s)
		}
		gaps(0, 1, last0)
		if rep.ResumedAt < 0 {
			fail("no rank synced after the restart")
		} else {
			if rep.ResumedAt != resumeAt {
				fail("after the restart the ring resumed at step %d, want %d", rep.ResumedAt, resumeAt)
			}
			gaps(1, rep.ResumedAt+1, total)
		}
		first := map[int64]float64{}
		for _, r := range recs {
			if r.Event == "step" && r.phase == 0 {
				first[r.Step] = r.Loss
			}
		}
		seen := map[int64]bool{}
		for _, r := range recs {
			if l, ok := first[r.Step]; ok && r.Event == "step" && r.phase == 1 && !seen[r.Step] {
				seen[r.Step] = true
				rep.Reapplied++
				if l == r.Loss {
					rep.Reproduced++
				}
			}
		}
	} else {
		gaps(0, 1, total)
	}
	// The last generation that trained: every rank applied the last step
	// with the same loss.
	for _, r := range recs {
		if r.Event == "step" && r.phase == last {
			rep.FinalGen = max(rep.FinalGen, r.Gen)
		}
	}
	ranks := map[int]float64{}
	for _, r := range recs {
		if r.Event == "step" && r.phase == last && r.Gen == rep.FinalGen && r.Step == total {
			ranks[r.Rank] = r.Loss
			rep.FinalLoss = r.Loss
		}
	}
	rep.FinalRanks = len(ranks)
	want := 0
	for _, r := range recs {
		if r.Gen == rep.FinalGen && r.phase == last && r.Event == "sync" {
			want++
		}
	}
	if ids, ok := members[rep.FinalGen]; ok {
		want = len(ids)
	}
	if len(ranks) == 0 {
		fail("no rank of the last generation (%d) applied the last step %d", rep.FinalGen, total)
	} else if len(ranks) < want {
		fail("%d of the %d ranks of the last generation (%d) applied the last step %d", len(ranks), want, rep.FinalGen, total)
	}
	return rep, errors.Join(errs...)
}
