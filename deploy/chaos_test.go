package deploy_test

// The fault scenarios of `ringtrain chaos` against the docker-compose
// cluster: every scenario brings up its own compose project (its own network
// and volumes), strikes at a step, and checks that the run finished,
// applied every step once, kept identical replicas and ended with the
// parameters of the undisturbed reference (a single-process `ringtrain
// train` of the same spec and seed, which chaos trains once per invocation).
//
// TestChaos builds the images (make images), then runs each scenario as a
// subtest, one `ringtrain chaos` each, all with one seed and one
// --reference-cache, so that the reference is trained once. It needs the
// Docker engine and Compose: without them it is skipped, except in CI ($CI
// set), where it fails. -short skips it (exact training: about two minutes
// for the reference and two to five per scenario on two cores; give go test
// -timeout 60m). Whatever happens, it removes every container, network and
// volume of its projects.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

const (
	chaosOverride = "deploy/chaos/compose.yml"
	chaosRunFile  = "deploy/chaos/run.yaml"
)

// composeTools are the installed Compose commands.
func composeTools() [][]string {
	var tools [][]string
	if p, err := exec.LookPath("docker"); err == nil && exec.Command(p, "compose", "version").Run() == nil {
		tools = append(tools, []string{p, "compose"})
	}
	if p, err := exec.LookPath("docker-compose"); err == nil {
		tools = append(tools, []string{p})
	}
	return tools
}

// TestChaosComposeFiles checks the chaos override and its run without the
// engine: every command line against the binary's flags, the run spec, and
// the merged project as the Compose tool reads it. Without a Compose tool
// the last part is skipped, except in CI ($CI set), where it fails.
func TestChaosComposeFiles(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(repoRoot, chaosOverride))
	if err != nil {
		t.Fatal(err)
	}
	var p composeProject
	if err := yaml.Unmarshal(b, &p); err != nil {
		t.Fatalf("%s: %v", chaosOverride, err)
	}
	base := loadCompose(t)
	for _, name := range sortedKeys(p.Services) {
		s := p.Services[name]
		where := chaosOverride + " service " + name
		if _, ok := base.Services[name]; !ok {
			t.Errorf("%s: not a service of %s", where, composeFile)
		}
		if s.Command == nil {
			continue
		}
		args := stringList(t, where+" command", s.Command)
		sub, fp := checkRingtrainArgs(t, where, args)
		if sub == "worker" {
			if fp.Flags["step-log"] != "/checkpoints/steps.jsonl" {
				t.Errorf("%s: chaos reads the step log from /checkpoints/steps.jsonl, the command has --step-log %q", where, fp.Flags["step-log"])
			}
		}
		if sub == "coordinator" && fp.Flags["hash-every"] == "" {
			t.Errorf("%s: the coordinators must compare replica hashes (--hash-every)", where)
		}
	}
	run, err := os.ReadFile(filepath.Join(repoRoot, chaosRunFile))
	if err != nil {
		t.Fatal(err)
	}
	checkRunFile(t, chaosRunFile, run)

	tools := composeTools()
	if len(tools) == 0 {
		missingTool(t, "no Compose tool (docker compose, docker-compose) is installed to merge "+chaosOverride, installCompose)
	}
	for _, tool := range tools {
		cmd := exec.Command(tool[0], append(tool[1:], "-p", "rtchaos-config", "-f", composeFile, "-f", chaosOverride, "config")...)
		cmd.Dir = repoRoot
		cmd.Env = append(os.Environ(), "RINGTRAIN_CHAOS_ETCD_PORT=23799")
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		if err := cmd.Run(); err != nil {
			t.Errorf("%s: %v\n%s", strings.Join(cmd.Args, " "), err, errb.String())
			continue
		}
		var merged composeProject
		if err := yaml.Unmarshal(out.Bytes(), &merged); err != nil {
			t.Fatal(err)
		}
		for _, svc := range []string{"coordinator-1", "coordinator-2"} {
			found := false
			for _, v := range merged.Services[svc].Volumes {
				if s, ok := v.(string); ok && strings.HasSuffix(s, "deploy/chaos/run.yaml:/etc/ringtrain/run.yaml:ro") {
					found = true
				}
			}
			if !found {
				t.Errorf("%s: %s does not mount %s at /etc/ringtrain/run.yaml: %v", tool, svc, chaosRunFile, merged.Services[svc].Volumes)
			}
		}
		if !strings.Contains(out.String(), "23799") {
			t.Errorf("%s: etcd's client port is not published on RINGTRAIN_CHAOS_ETCD_PORT", tool)
		}
	}
}

// dockerReady reports why Docker cannot run the scenarios, if it cannot.
func dockerReady() error {
	if _, err := exec.LookPath("docker"); err != nil {
		return fmt.Errorf("docker not in PATH")
	}
	if out, err := exec.Command("docker", "version", "--format", "{{.Server.Version}}").CombinedOutput(); err != nil {
		return fmt.Errorf("no Docker engine: %v: %s", err, bytes.TrimSpace(out))
	}
	if len(composeTools()) == 0 {
		return fmt.Errorf("neither `docker compose` nor docker-compose is installed")
	}
	return nil
}

// chaosResult is the part of a `ringtrain chaos` JSON line the test reads.
type chaosResult struct {
	Scenario     string   `json:"scenario"`
	Passed       bool     `json:"passed"`
	Error        string   `json:"error"`
	Steps        int64    `json:"steps"`
	TotalSteps   int64    `json:"total_steps"`
	TestAccuracy float64  `json:"test_accuracy"`
	ParamsSHA256 string   `json:"params_sha256"`
	Reference    string   `json:"reference_sha256"`
	RefSeconds   float64  `json:"reference_seconds"`
	StruckAt     int64    `json:"struck_at"`
	Victim       string   `json:"victim"`
	Generations  []string `json:"generations"`
	Notes        []string `json:"notes"`
	Seconds      float64  `json:"seconds"`
}

func TestChaos(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the compose fault scenarios take about half an hour")
	}
	if err := dockerReady(); err != nil {
		missingTool(t, "the chaos suite needs Docker: "+err.Error(), installDocker)
	}
	if ringtrainBuildErr != nil {
		t.Fatal(ringtrainBuildErr)
	}
	if os.Getenv("RINGTRAIN_CHAOS_SKIP_IMAGES") == "" {
		start := time.Now()
		cmd := exec.Command("make", "images")
		cmd.Dir = repoRoot
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("make images: %v\n%s", err, tail(string(out), 40))
		}
		t.Logf("make images: %.0fs", time.Since(start).Seconds())
	}

	out, err := exec.Command(ringtrainBin, "chaos", "--list").Output()
	if err != nil {
		t.Fatalf("ringtrain chaos --list: %v", err)
	}
	var scenarios []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) > 0 {
			scenarios = append(scenarios, f[0])
		}
	}
	if len(scenarios) < 6 {
		t.Fatalf("ringtrain chaos --list lists %d scenarios:\n%s", len(scenarios), out)
	}

	prefix := fmt.Sprintf("rtchaos-test-%d", os.Getpid())
	t.Cleanup(func() { cleanupChaos(t, prefix, scenarios) })
	refCache := t.TempDir()
	for _, name := range scenarios {
		t.Run(name, func(t *testing.T) {
			runChaos(t, prefix, name, refCache)
		})
	}
}

// runChaos runs one scenario through the binary. The binary tears its
// project down itself, Ctrl-C and its own --timeout included; should this
// test process die, the child gets SIGTERM and still tears down.
func runChaos(t *testing.T, prefix, name, refCache string) {
	timeout := 10 * time.Minute
	if d, ok := t.Deadline(); ok {
		left := time.Until(d) - 45*time.Second
		if ents, _ := os.ReadDir(refCache); len(ents) == 0 {
			left -= 3 * time.Minute // the reference is trained first, outside --timeout
		}
		if left < 90*time.Second {
			t.Fatalf("%v left before the test deadline: not enough for a scenario; run go test with -timeout 60m", time.Until(d).Round(time.Second))
		}
		timeout = min(timeout, left)
	}
	cmd := exec.Command(ringtrainBin, "chaos", "--scenario", name, "--project", prefix,
		"--seed", "1", "--strike-step", "200", "--reference-cache", refCache,
		"--timeout", timeout.String())
	cmd.Dir = repoRoot
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var res chaosResult
	if jerr := json.Unmarshal(bytes.TrimSpace(stdout.Bytes()), &res); jerr != nil {
		t.Fatalf("ringtrain chaos --scenario %s: %v; no result line (%v)\nstdout:\n%s\nstderr:\n%s", name, err, jerr, stdout.String(), tail(stderr.String(), 120))
	}
	t.Logf("%s: struck at step %d (victim %s); steps %d/%d, test accuracy %.4f, %.0fs (reference %.0fs); generations %s",
		name, res.StruckAt, res.Victim, res.Steps, res.TotalSteps, res.TestAccuracy, res.Seconds, res.RefSeconds, strings.Join(res.Generations, ", "))
	t.Logf("%s: params_sha256 %s, reference %s", name, res.ParamsSHA256, res.Reference)
	for _, n := range res.Notes {
		t.Logf("%s: %s", name, n)
	}
	if err != nil || !res.Passed {
		t.Fatalf("%s failed: %s (%v)\n%s", name, res.Error, err, tail(stderr.String(), 120))
	}
	if res.ParamsSHA256 == "" || res.ParamsSHA256 != res.Reference {
		t.Fatalf("%s passed with params_sha256 %q against the reference's %q", name, res.ParamsSHA256, res.Reference)
	}
}

// cleanupChaos removes whatever the scenarios left (nothing, normally) and
// fails the test if anything was left.
func cleanupChaos(t *testing.T, prefix string, scenarios []string) {
	var left []string
	for _, sc := range scenarios {
		label := "label=com.docker.compose.project=" + prefix + "-" + sc
		for _, kind := range [][]string{
			{"ps", "-aq", "--filter", label},
			{"network", "ls", "-q", "--filter", label},
			{"volume", "ls", "-q", "--filter", label},
		} {
			out, _ := exec.Command("docker", kind...).Output()
			ids := strings.Fields(string(out))
			if len(ids) == 0 {
				continue
			}
			left = append(left, fmt.Sprintf("%s %s: %v", prefix+"-"+sc, kind[0], ids))
			var rm []string
			switch kind[0] {
			case "ps":
				rm = append([]string{"rm", "-f", "-v"}, ids...)
			case "network":
				rm = append([]string{"network", "rm"}, ids...)
			default:
				rm = append([]string{"volume", "rm", "-f"}, ids...)
			}
			if out, err := exec.Command("docker", rm...).CombinedOutput(); err != nil {
				t.Errorf("docker %s: %v: %s", strings.Join(rm, " "), err, out)
			}
		}
	}
	if len(left) > 0 {
		t.Errorf("the chaos scenarios left these behind (now removed):\n%s", strings.Join(left, "\n"))
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
