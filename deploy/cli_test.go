// Package deploy_test checks the deployment files against the binary they
// run: docker-compose.yml and the kustomize trees under k8s/. Strict decoding
// catches misspelled fields; the checks here catch what it cannot: flags the
// binary does not accept, selectors that select nothing, probes on undeclared
// ports, etcd member lists that disagree with the replica count, and so on.
package deploy_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/ringtrain/ringtrain/train"
)

// repoRoot is the module root, seen from this package's directory.
const repoRoot = ".."

// ringtrainBin is the binary under test: $RINGTRAIN_TEST_BINARY if set, else
// built once by TestMain from ./cmd/ringtrain.
var (
	ringtrainBin      string
	ringtrainBuildErr error
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "ringtrain-deploy-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if b := os.Getenv("RINGTRAIN_TEST_BINARY"); b != "" {
		ringtrainBin = b
	} else {
		ringtrainBin = filepath.Join(dir, "ringtrain")
		cmd := exec.Command("go", "build", "-o", ringtrainBin, "./cmd/ringtrain")
		cmd.Dir = repoRoot
		if out, err := cmd.CombinedOutput(); err != nil {
			ringtrainBuildErr = fmt.Errorf("go build ./cmd/ringtrain: %v\n%s", err, out)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// flagSet is what `<binary> <sub> --help` lists: flag name → takes a value.
type flagSet map[string]bool

var (
	helpMu    sync.Mutex
	helpCache = map[string]flagSet{}
	// helpReported remembers which test already failed for which subcommand.
	helpReported = map[string]bool{}
)

// printDefaultsLine matches the first line of a flag in the flag package's
// PrintDefaults output: "  -name", "  -name type", "  -x\tusage".
var printDefaultsLine = regexp.MustCompile(`^  -([A-Za-z0-9][-A-Za-z0-9_.]*)( [^\t ]+)?(\t.*)?$`)

// parsePrintDefaults reads flag names from PrintDefaults output. A flag with
// a type word after its name takes a value; one without is boolean.
func parsePrintDefaults(help string) flagSet {
	fs := flagSet{}
	for _, line := range strings.Split(help, "\n") {
		if m := printDefaultsLine.FindStringSubmatch(line); m != nil {
			fs[m[1]] = m[2] != ""
		}
	}
	return fs
}

// ringtrainFlags returns the flags of `ringtrain <sub>`, or nil after
// failing the test (once per test and subcommand) if the binary did not build
// or does not have the subcommand; the caller's other checks go on.
func ringtrainFlags(t *testing.T, sub string) flagSet {
	t.Helper()
	helpMu.Lock()
	defer helpMu.Unlock()
	if fs, ok := helpCache[sub]; ok {
		return fs
	}
	err := ringtrainBuildErr
	if err == nil {
		var fs flagSet
		if fs, err = helpFlags(ringtrainBin, sub, "--help"); err == nil {
			helpCache[sub] = fs
			return fs
		}
	}
	if key := t.Name() + " " + sub; !helpReported[key] {
		helpReported[key] = true
		t.Errorf("the manifests run `ringtrain %s`, which cannot be checked: %v", sub, err)
	}
	return nil
}

// helpFlags runs bin with args (ending in --help) and parses its flags.
func helpFlags(bin string, args ...string) (flagSet, error) {
	cmd := exec.Command(bin, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	fs := parsePrintDefaults(out.String())
	if err != nil || len(fs) == 0 {
		return nil, fmt.Errorf("`%s %s` failed (%v) or listed no flags; it printed:\n%s",
			filepath.Base(bin), strings.Join(args, " "), err, out.String())
	}
	return fs, nil
}

// etcdFlags returns the flags of the etcd server binary built by
// `make etcd-binary`, or nil when it is not there (the check is then
// skipped, except in CI ($CI set), where the test fails).
func etcdFlags(t *testing.T) map[string]bool {
	t.Helper()
	bin := filepath.Join(repoRoot, "bin", "etcd")
	if _, err := os.Stat(bin); err != nil {
		failInCI(t, bin+" is not built to check the manifests' etcd flags", installEtcdBin)
		t.Logf("%s not built (%s): etcd flags not checked", bin, installEtcdBin)
		return nil
	}
	out, err := exec.Command(bin, "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("%s --help: %v\n%s", bin, err, out)
	}
	// etcd's help lists "  --name 'default'" and "  --enable-v2" lines.
	re := regexp.MustCompile(`(?m)^\s+--([a-z0-9][-a-z0-9.]*)`)
	fs := map[string]bool{}
	for _, m := range re.FindAllStringSubmatch(string(out), -1) {
		fs[m[1]] = true
	}
	if len(fs) < 20 {
		t.Fatalf("%s --help listed only %d flags:\n%s", bin, len(fs), out)
	}
	return fs
}

// parsedArgs is a command line split the way the flag package splits it.
type parsedArgs struct {
	Flags map[string]string // the last value of each flag
	Order []string          // flag names in order
}

// checkRingtrainArgs validates args (subcommand first) against the binary's
// flags, the way flag.FlagSet.Parse would: "-f", "--f", "-f=v", "--f v".
func checkRingtrainArgs(t *testing.T, where string, args []string) (sub string, p parsedArgs) {
	t.Helper()
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		t.Errorf("%s: ringtrain needs a subcommand first, got %q", where, args)
		return "", p
	}
	sub = args[0]
	fs := ringtrainFlags(t, sub)
	p, errs := splitFlags(args[1:], func(name string) (known, takesValue bool) {
		if fs == nil { // already failed; split as if every flag took a value
			return true, true
		}
		v, ok := fs[name]
		return ok, v
	})
	for _, e := range errs {
		t.Errorf("%s: ringtrain %s: %v (its flags: %s)", where, sub, e, strings.Join(sortedKeys(fs), " "))
	}
	return sub, p
}

// splitFlags splits a flag-package command line. lookup reports whether a
// flag exists and whether it takes a value (a bool flag does not).
func splitFlags(args []string, lookup func(string) (known, takesValue bool)) (parsedArgs, []error) {
	p := parsedArgs{Flags: map[string]string{}}
	var errs []error
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			if i+1 < len(args) {
				errs = append(errs, fmt.Errorf("positional arguments %q after --", args[i+1:]))
			}
			break
		}
		if !strings.HasPrefix(a, "-") || a == "-" {
			errs = append(errs, fmt.Errorf("unexpected positional argument %q; every option is a --flag", a))
			continue
		}
		name, value, hasValue := strings.Cut(strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-"), "=")
		known, takesValue := lookup(name)
		if !known {
			errs = append(errs, fmt.Errorf("unknown flag %q", "--"+name))
			continue
		}
		if takesValue && !hasValue {
			if i+1 >= len(args) {
				errs = append(errs, fmt.Errorf("flag --%s needs a value", name))
				continue
			}
			i++
			value = args[i]
		}
		p.Flags[name] = value
		p.Order = append(p.Order, name)
	}
	return p, errs
}

// checkEtcdArgs validates an etcd server command line against bin/etcd's
// flags when that binary exists, and returns the flags either way.
func checkEtcdArgs(t *testing.T, where string, args []string, fs map[string]bool) parsedArgs {
	t.Helper()
	p, errs := splitFlags(args, func(name string) (bool, bool) {
		if fs == nil {
			return true, true
		}
		return fs[name], true
	})
	for _, e := range errs {
		t.Errorf("%s: etcd: %v", where, e)
	}
	return p
}

// checkRunFile decodes a run spec the way `ringtrain coordinator --config`
// does (unknown keys are errors) and validates it. A run file holds the
// run spec only: the machine-local keys (data, init, checkpoint_dir,
// threads) are each worker's flags, which the coordinator does not pass on.
func checkRunFile(t *testing.T, where string, data []byte) {
	t.Helper()
	var keys map[string]any
	if err := yaml.Unmarshal(data, &keys); err != nil {
		t.Errorf("%s: %v", where, err)
		return
	}
	for _, k := range []string{"data", "init", "checkpoint_dir", "threads"} {
		if _, ok := keys[k]; ok {
			t.Errorf("%s: %s is machine-local, not part of the run spec: give the workers --%s instead", where, k, strings.ReplaceAll(k, "_", "-"))
		}
	}
	f := filepath.Join(t.TempDir(), "run.yaml")
	if err := os.WriteFile(f, data, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := train.DefaultConfig()
	if err := train.LoadFile(f, &cfg); err != nil {
		t.Errorf("%s: %v", where, err)
		return
	}
	if err := cfg.Validate(); err != nil {
		t.Errorf("%s: %v", where, err)
	}
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func TestParsePrintDefaults(t *testing.T) {
	help := "Usage of x:\n" +
		"  -etcd string\n    \tetcd endpoints\n" +
		"  -n int\n    \tcount (default 3)\n" +
		"  -q\tquiet\n" +
		"  -shuffle\n    \tshuffle each epoch (default true)\n" +
		"  -peer-timeout duration\n    \tbound (default 5s)\n" +
		"    \tsecond line of a usage -not-a-flag\n"
	got := parsePrintDefaults(help)
	want := flagSet{"etcd": true, "n": true, "q": false, "shuffle": false, "peer-timeout": true}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("parsePrintDefaults = %v, want %v", got, want)
	}
}

func TestSplitFlags(t *testing.T) {
	fs := flagSet{"etcd": true, "shuffle": false, "run": true}
	lookup := func(n string) (bool, bool) { v, ok := fs[n]; return ok, v }
	for _, tc := range []struct {
		args    []string
		want    string
		wantErr int
	}{
		{[]string{"--etcd=http://e:2379", "-run", "r", "--shuffle"}, "map[etcd:http://e:2379 run:r shuffle:]", 0},
		{[]string{"--etcd", "a", "--nope=1"}, "map[etcd:a]", 1},
		{[]string{"--run"}, "map[]", 1},
		{[]string{"stray", "--shuffle", "--", "x"}, "map[shuffle:]", 2},
	} {
		p, errs := splitFlags(tc.args, lookup)
		if fmt.Sprint(p.Flags) != tc.want || len(errs) != tc.wantErr {
			t.Errorf("splitFlags(%q) = %v, %v; want %s with %d errors", tc.args, p.Flags, errs, tc.want, tc.wantErr)
		}
	}
}
