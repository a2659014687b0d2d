package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/ringtrain/ringtrain/internal/pki"
	"github.com/ringtrain/ringtrain/internal/usage"
)

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
	refCache    string
	keep        bool
	etcdClient  string
}

// chaosResult is what one scenario reports: one JSON line on stdout.
type chaosResult struct {
	Scenario     string  `json:"scenario"`
	Project      string  `json:"project"`
	Seed         int64   `json:"seed"`
	StrikeStep   int64   `json:"strike_step"`
	StruckAt     int64   `json:"struck_at"` // the ring's published step when the fault was injected
	Victim       string  `json:"victim,omitempty"`
	Steps        int64   `json:"steps"`
	TotalSteps   int64   `json:"total_steps"`
	TestAccuracy float64 `json:"test_accuracy"`
	Target       float64 `json:"target_accuracy,omitempty"` // --target-accuracy; 0: not checked
	// ParamsSHA256 is the run's final params_sha256 (its done record);
	// ReferenceSHA256 the undisturbed reference's, which it must equal.
	ParamsSHA256      string  `json:"params_sha256"`
	ReferenceSHA256   string  `json:"reference_sha256"`
	ReferenceAccuracy float64 `json:"reference_accuracy"`
	// ReferenceSeconds is how long training the reference took, when this
	// scenario trained it (the next ones of the invocation reuse it).
	ReferenceSeconds float64  `json:"reference_seconds,omitempty"`
	Generations      []string `json:"generations"`
	StepLogLines     int      `json:"step_log_lines"`
	FinalWorkers     int      `json:"final_workers"`
	FinalLoss        float64  `json:"final_loss"`
	Notes            []string `json:"notes,omitempty"`
	Seconds          float64  `json:"seconds"` // the scenario, start to teardown, without the reference's training
	Passed           bool     `json:"passed"`
	Error            string   `json:"error,omitempty"`
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
		"finished, applied every step exactly once, kept its replicas identical and ended with the parameters\n" +
		"of the undisturbed reference: its final params_sha256 must equal that of a single-process\n" +
		"`ringtrain train` of the same run spec and seed in the same image (trained once per invocation,\n" +
		"network none). Build the images first (make images). Prints one JSON line per scenario; exit status\n" +
		"1 if any failed.\n\n" +
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
	fs.Int64Var(&o.strikeStep, "strike-step", 200, "strike once the ring has published this step")
	fs.StringVar(&o.composeFile, "compose-file", "docker-compose.yml", "the cluster's compose file")
	fs.StringVar(&o.override, "override", "", "the chaos override compose file (default: deploy/chaos/compose.yml next to --compose-file)")
	fs.StringVar(&o.project, "project", "", "compose project name prefix; each scenario runs as PREFIX-SCENARIO (default: rtchaos-<random>)")
	fs.StringVar(&o.run, "run", "chaos", "run name (etcd prefix)")
	fs.Float64Var(&o.target, "target-accuracy", 0, "also require this final test accuracy (0: off; the verdict is the parameters' equality with the reference)")
	fs.DurationVar(&o.timeout, "timeout", 10*time.Minute, "time limit of one scenario, start to teardown (the reference run is not counted)")
	fs.DurationVar(&o.outage, "outage", 8*time.Second, "how long pause-worker and disconnect-worker keep the worker away (above --peer-timeout plus gossip's detection)")
	fs.StringVar(&o.compose, "compose", os.Getenv("COMPOSE"), "the Compose command (default: `docker compose` if present, else docker-compose)")
	fs.StringVar(&o.logsDir, "logs", "", "write each scenario's container logs and step log to this directory")
	fs.StringVar(&o.refCache, "reference-cache", "", "keep each reference run's summary in this directory and reuse it in later invocations (same image ID, run file and arguments); default: this invocation only")
	fs.StringVar(&o.etcdClient, "etcd-client", "ops", "the client certificate ('ringtrain certs --clients NAME', read by the coordinators' --etcd-clients) with which chaos\n"+
		"follows the run in etcd over TLS, copied out of each project's certs volume (each project has its own CA)")
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
	case (pki.Identity{Run: "x", Role: pki.RoleClient, ID: o.etcdClient}).Validate() != nil:
		return usage.Errorf("--etcd-client %q cannot name a client certificate: use letters, digits, '-', '_' or '.', as given to 'ringtrain certs --clients' (default ops)", o.etcdClient)
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
	if o.refCache != "" {
		if err := os.MkdirAll(o.refCache, 0o755); err != nil {
			return err
		}
	}
	if err := chaosPreflight(ctx, &o); err != nil {
		return err
	}

	var failed []string
	refs := newChaosRefCache(o.refCache)
	for _, sc := range scs {
		if ctx.Err() != nil {
			break
		}
		res := runChaosScenario(ctx, stderr, o, sc, refs)
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
