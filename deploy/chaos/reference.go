package chaos

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/ringtrain/ringtrain/train"
)

// The undisturbed reference. Training is exact: the final parameters do not
// depend on the number of workers, the ring order or any fault, so a run
// that survived a scenario must end with the parameters that one process
// training the same spec ends with, bit for bit. chaos trains that process
// once per spec and invocation (`ringtrain train` in a container of the
// cluster's image, the coordinators' run file mounted, no network) and
// every scenario compares the run's final params_sha256 with its.

// chaosRefSpec is how the reference trains: the image, the run file the
// coordinators read (mounted at the same path) and the arguments of
// `ringtrain train`.
type chaosRefSpec struct {
	image  string
	mounts []string // SOURCE:TARGET:ro
	args   []string // after the image: train ...
}

func (s chaosRefSpec) key() string {
	return s.image + "\x00" + strings.Join(s.mounts, "\x00") + "\x00" + strings.Join(s.args, "\x00")
}

// chaosReference is one reference run's outcome.
type chaosReference struct {
	spec    chaosRefSpec
	sum     train.Summary
	seconds float64
	err     error
}

// chaosRefCache keeps the reference runs of one invocation by spec: every
// scenario of an invocation shares the seed and the run file, so the first
// one trains it and the others reuse it. With a directory (--reference-cache)
// it also keeps them across invocations, by image ID, run file contents and
// arguments, so that a series of one-scenario invocations (TestChaos) trains
// each reference once.
type chaosRefCache struct {
	dir  string
	mu   sync.Mutex
	runs map[string]*chaosReference
	n    int
}

func newChaosRefCache(dir string) *chaosRefCache {
	return &chaosRefCache{dir: dir, runs: map[string]*chaosReference{}}
}

// get returns the reference for spec, training it if neither this
// invocation nor the cache directory has it; fresh reports whether this
// call trained it. A failed run is not kept unless it failed on its own
// (not because ctx ended), and never on disk.
func (c *chaosRefCache) get(ctx context.Context, log func(string, ...any), project string, spec chaosRefSpec) (ref *chaosReference, fresh bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ref, ok := c.runs[spec.key()]; ok {
		if ref.err == nil {
			log("reference (trained earlier in this invocation): step %d, params_sha256 %s", ref.sum.Step, ref.sum.ParamsSHA256)
		}
		return ref, false
	}
	var file string
	if c.dir != "" {
		k, err := diskKey(ctx, spec)
		if err != nil {
			return &chaosReference{spec: spec, err: fmt.Errorf("reference cache: %w", err)}, false
		}
		file = filepath.Join(c.dir, "reference-"+k[:32]+".json")
		if b, err := os.ReadFile(file); err == nil {
			var d chaosRefFile
			if json.Unmarshal(b, &d) == nil && d.Key == k && d.Summary.ParamsSHA256 != "" {
				log("reference from %s: step %d, params_sha256 %s (trained in %.1fs)", file, d.Summary.Step, d.Summary.ParamsSHA256, d.Seconds)
				ref = &chaosReference{spec: spec, sum: d.Summary, seconds: d.Seconds}
				c.runs[spec.key()] = ref
				return ref, false
			}
		}
		defer func() {
			if ref.err != nil {
				return
			}
			b, _ := json.Marshal(chaosRefFile{Key: k, Image: spec.image, Args: spec.args, Summary: ref.sum, Seconds: ref.seconds})
			tmp := file + ".tmp"
			if err := os.WriteFile(tmp, b, 0o644); err == nil {
				err = os.Rename(tmp, file)
			}
		}()
	}
	c.n++
	ref = runChaosReference(ctx, log, fmt.Sprintf("%s-reference-%d", project, c.n), spec)
	if ref.err == nil || ctx.Err() == nil {
		c.runs[spec.key()] = ref
	}
	return ref, true
}

// chaosRefFile is one reference in the --reference-cache directory.
type chaosRefFile struct {
	Key     string        `json:"key"`
	Image   string        `json:"image"`
	Args    []string      `json:"args"`
	Summary train.Summary `json:"summary"`
	Seconds float64       `json:"seconds"`
}

// diskKey identifies a reference across invocations: the image's ID (a
// rebuilt image may train differently), the contents of the files mounted
// into it, and its arguments.
func diskKey(ctx context.Context, spec chaosRefSpec) (string, error) {
	out, err := exec.CommandContext(ctx, "docker", "image", "inspect", "--format", "{{.Id}}", spec.image).Output()
	if err != nil {
		return "", fmt.Errorf("docker image inspect %s: %v", spec.image, err)
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00", spec.image, strings.TrimSpace(string(out)))
	for _, m := range spec.mounts {
		src, _, _ := strings.Cut(m, ":")
		b, err := os.ReadFile(src)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%s\x00%x\x00", m, sha256.Sum256(b))
	}
	fmt.Fprintf(h, "%s", strings.Join(spec.args, "\x00"))
	return hex.EncodeToString(h.Sum(nil)), nil
}

// runChaosReference trains spec in a container named name, removed
// afterwards (also when ctx ends: a killed docker client would leave it
// running), and reads the summary `ringtrain train` prints last.
func runChaosReference(ctx context.Context, log func(string, ...any), name string, spec chaosRefSpec) *chaosReference {
	ref := &chaosReference{spec: spec}
	args := []string{"run", "--rm", "--name", name, "--network", "none", "--read-only", "--tmpfs", "/tmp",
		"--cap-drop", "ALL", "--security-opt", "no-new-privileges:true"}
	for _, m := range spec.mounts {
		args = append(args, "-v", m)
	}
	args = append(append(args, spec.image), spec.args...)
	log("reference: docker %s", strings.Join(args, " "))
	start := time.Now()
	cmd := exec.CommandContext(ctx, "docker", args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	ref.seconds = math.Round(time.Since(start).Seconds()*10) / 10
	if ctx.Err() != nil {
		rctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		exec.CommandContext(rctx, "docker", "rm", "-f", name).Run()
		cancel()
	}
	if err != nil {
		ref.err = fmt.Errorf("reference run (docker %s): %v: %s", strings.Join(args, " "), err, errorLines(errb.String()))
		return ref
	}
	sum, err := parseTrainSummary(out.Bytes())
	if err != nil {
		ref.err = fmt.Errorf("reference run: %w; its output:\n%s", err, lastLines(out.String()+errb.String(), 10))
		return ref
	}
	ref.sum = sum
	log("reference: step %d, test accuracy %.4f, params_sha256 %s, %.1fs", sum.Step, sum.TestAccuracy, sum.ParamsSHA256, ref.seconds)
	return ref
}

// errorLines is what to show of a failed command's stderr: a panic's first
// lines (its message and where), else the last lines.
func errorLines(s string) string {
	if i := strings.Index(s, "panic: "); i >= 0 {
		lines := strings.SplitN(s[i:], "\n", 7)
		return strings.Join(lines[:min(len(lines), 6)], "\n")
	}
	return lastLines(s, 10)
}

// parseTrainSummary reads the last JSON line of `ringtrain train`'s stdout.
func parseTrainSummary(out []byte) (train.Summary, error) {
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	last := strings.TrimSpace(lines[len(lines)-1])
	var sum train.Summary
	if last == "" {
		return sum, errors.New("no summary line on stdout")
	}
	if err := json.Unmarshal([]byte(last), &sum); err != nil {
		return sum, fmt.Errorf("summary line %q: %w", last, err)
	}
	if sum.ParamsSHA256 == "" {
		return sum, fmt.Errorf("summary line %q has no params_sha256", last)
	}
	return sum, nil
}

// machineLocalFlags are the training flags that are each process's own:
// the coordinators ignore them for the run spec, so the reference takes
// --data and --threads from the workers' command instead.
var machineLocalFlags = map[string]bool{"data": true, "init": true, "checkpoint-dir": true, "threads": true}

// referenceSpec reads the merged compose project (`compose config`, with
// the scenario's environment, so with its seed) and derives the reference:
// the coordinators' image, their --config file and the training flags of
// their command (--seed ...), the workers' --data and --threads.
func (r *chaosRun) referenceSpec(ctx context.Context) (chaosRefSpec, error) {
	c := strings.Fields(r.o.compose)
	cmd := exec.CommandContext(ctx, c[0], r.composeArgs("config")...)
	cmd.Env = r.env
	cmd.Dir = filepath.Dir(r.o.composeFile)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return chaosRefSpec{}, fmt.Errorf("%s %s: %v: %s", c[0], strings.Join(r.composeArgs("config"), " "), err, lastLines(errb.String(), 10))
	}
	return referenceSpecFrom(out.Bytes())
}

// chaosComposeService is the part of a `compose config` service the
// reference reads.
type chaosComposeService struct {
	Image   string `yaml:"image"`
	Command any    `yaml:"command"`
	Volumes []any  `yaml:"volumes"`
}

// referenceSpecFrom derives the reference from a merged compose project.
func referenceSpecFrom(config []byte) (chaosRefSpec, error) {
	var p struct {
		Services map[string]chaosComposeService `yaml:"services"`
	}
	if err := yaml.Unmarshal(config, &p); err != nil {
		return chaosRefSpec{}, fmt.Errorf("compose config: %w", err)
	}
	names := make([]string, 0, len(p.Services))
	for n := range p.Services {
		names = append(names, n)
	}
	sort.Strings(names)
	var (
		spec      chaosRefSpec
		coordSeen string
		worker    []string
	)
	for _, n := range names {
		s := p.Services[n]
		args, err := commandList(s.Command)
		if err != nil {
			return chaosRefSpec{}, fmt.Errorf("compose config: service %s: %w", n, err)
		}
		if len(args) == 0 {
			continue
		}
		switch args[0] {
		case "worker":
			if worker == nil {
				worker = args[1:]
			}
		case "coordinator":
			cs, err := coordinatorReference(s, args[1:])
			if err != nil {
				return chaosRefSpec{}, fmt.Errorf("service %s: %w", n, err)
			}
			if coordSeen == "" {
				spec, coordSeen = cs, n
			} else if cs.key() != spec.key() {
				return chaosRefSpec{}, fmt.Errorf("services %s and %s would publish different run specs (image, --config or training flags differ): no single reference", coordSeen, n)
			}
		}
	}
	if coordSeen == "" {
		return chaosRefSpec{}, errors.New("compose config: no coordinator service (command `coordinator ...`)")
	}
	data, threads := "mnist", ""
	if worker != nil {
		wf := splitFlagArgs(worker, func(string) bool { return false })
		if v, ok := wf["data"]; ok {
			data = v
		}
		threads = wf["threads"]
	}
	if data != "mnist" {
		return chaosRefSpec{}, fmt.Errorf("the workers train --data %q; the reference run knows only mnist (the image's /data/mnist)", data)
	}
	spec.args = append(spec.args, "--data=mnist")
	if threads != "" && threads != "0" {
		spec.args = append(spec.args, "--threads="+threads)
	}
	spec.args = append(spec.args, "--log-level=warn")
	return spec, nil
}

// coordinatorReference is the reference a coordinator's command describes:
// `train --config PATH` (its run file mounted at the same path) plus the
// training flags of its command line, machine-local ones left out.
func coordinatorReference(s chaosComposeService, args []string) (chaosRefSpec, error) {
	if s.Image == "" {
		return chaosRefSpec{}, errors.New("no image")
	}
	tfs := flag.NewFlagSet("train", flag.ContinueOnError)
	cfg := train.DefaultConfig()
	train.RegisterFlags(tfs, &cfg)
	isBool := func(name string) bool {
		if f := tfs.Lookup(name); f != nil {
			b, ok := f.Value.(interface{ IsBoolFlag() bool })
			return ok && b.IsBoolFlag()
		}
		return false
	}
	spec := chaosRefSpec{image: s.Image, args: []string{"train"}}
	flags := splitFlagArgs(args, isBool)
	if cfgPath, ok := flags["config"]; ok {
		src, ok := bindSource(s.Volumes, cfgPath)
		if !ok {
			return chaosRefSpec{}, fmt.Errorf("--config %s is not a file mounted from the host", cfgPath)
		}
		spec.mounts = append(spec.mounts, src+":"+cfgPath+":ro")
		spec.args = append(spec.args, "--config="+cfgPath)
	}
	names := make([]string, 0, len(flags))
	for n := range flags {
		if tfs.Lookup(n) != nil && !machineLocalFlags[n] {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	for _, n := range names {
		spec.args = append(spec.args, "--"+n+"="+flags[n])
	}
	return spec, nil
}

// splitFlagArgs maps a flag-package command line to name → value (a bool
// flag without =value maps to "true"). A flag without =value takes the
// next argument unless isBool says it is a bool flag or the next argument
// is a flag itself.
func splitFlagArgs(args []string, isBool func(string) bool) map[string]string {
	out := map[string]string{}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" || !strings.HasPrefix(a, "-") {
			break
		}
		name, value, ok := strings.Cut(strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-"), "=")
		if !ok {
			switch {
			case isBool(name):
				value = "true"
			case i+1 < len(args) && !strings.HasPrefix(args[i+1], "-"):
				i++
				value = args[i]
			}
		}
		out[name] = value
	}
	return out
}

// commandList reads a compose command: a list of strings or one string.
func commandList(v any) ([]string, error) {
	switch v := v.(type) {
	case nil:
		return nil, nil
	case string:
		return strings.Fields(v), nil
	case []any:
		out := make([]string, len(v))
		for i, e := range v {
			s, ok := e.(string)
			if !ok {
				return nil, fmt.Errorf("command element %v is not a string", e)
			}
			out[i] = s
		}
		return out, nil
	}
	return nil, fmt.Errorf("command %v is neither a string nor a list", v)
}

// bindSource finds the host path bind-mounted at target, in the short
// syntax docker-compose 1.29 prints (SOURCE:TARGET[:MODE]) or the long one
// of Compose v2 (type: bind, source, target).
func bindSource(volumes []any, target string) (string, bool) {
	for _, v := range volumes {
		switch v := v.(type) {
		case string:
			parts := strings.Split(v, ":")
			if len(parts) >= 2 && parts[1] == target && filepath.IsAbs(parts[0]) {
				return parts[0], true
			}
		case map[string]any:
			src, _ := v["source"].(string)
			tgt, _ := v["target"].(string)
			if typ, _ := v["type"].(string); typ == "bind" && tgt == target && filepath.IsAbs(src) {
				return src, true
			}
		}
	}
	return "", false
}

// checkReference compares the run's final parameters with the reference's.
func checkReference(sum train.Summary, ref *chaosReference) error {
	var errs []error
	if sum.ParamsSHA256 == "" {
		errs = append(errs, errors.New("the run's final summary has no params_sha256"))
	}
	if ref.sum.Step != sum.Step {
		errs = append(errs, fmt.Errorf("the reference trained %d steps, the run %d: not the same run spec", ref.sum.Step, sum.Step))
	}
	if sum.ParamsSHA256 != "" && sum.ParamsSHA256 != ref.sum.ParamsSHA256 {
		errs = append(errs, fmt.Errorf("final params_sha256 %s differs from the undisturbed reference's %s", sum.ParamsSHA256, ref.sum.ParamsSHA256))
	}
	return errors.Join(errs...)
}
