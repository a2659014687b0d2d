package train

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/ringtrain/ringtrain/internal/usage"
)

// FuzzLoadFile fuzzes a YAML or JSON config file read over the defaults.
// LoadFile must return a usage error or a Config whose Validate returns nil
// or a usage error (never a panic), and that config, written back in the
// same format (and as JSON where it can be), must load to the same value.
func FuzzLoadFile(f *testing.F) {
	f.Add([]byte("lr: 0.2\nbatch: 64\nlayers: 784-100-10\n"), false)
	f.Add([]byte(`{"lr": 0.3, "shuffle": false, "data": "csv:a.csv,b.csv"}`), true)
	f.Add([]byte("optimizer: lm\nloss: mse\nlayers: 1-4-1\nlm_mu: .inf\nlm_max_params: 9223372036854775807\n"), false)
	f.Add([]byte("layers: 9223372036854775807-9223372036854775807-2\nexact: true\nmicro_batch: -1\n"), false)
	f.Add([]byte("lr: .nan\nmomentum: -.inf\nseed: 18446744073709551615\n"), false)
	f.Add([]byte("a: &a [*a, *a]\n"), false)
	f.Add([]byte("learning_rate: 0.2\n"), false)
	f.Add([]byte("---\n---\nlr: 1\n"), false)
	f.Add([]byte(`{"threads": 0, "init": "x", "checkpoint_dir": "/tmp/ck"}{"lr": 2}`), true)
	f.Add([]byte(`{"epochs": 1e300}`), true)
	f.Add([]byte{}, false)
	f.Add([]byte{}, true)

	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, b []byte, asJSON bool) {
		path := filepath.Join(dir, "run.yaml")
		if asJSON {
			path = filepath.Join(dir, "run.json")
		}
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		c := DefaultConfig()
		if err := LoadFile(path, &c); err != nil {
			if !usage.Is(err) {
				t.Fatalf("LoadFile error is not a usage error: %v", err)
			}
			return
		}
		if err := c.Validate(); err != nil && !usage.Is(err) {
			t.Fatalf("Validate error is not a usage error: %v", err)
		}

		if asJSON {
			configRoundTripJSON(t, dir, c)
			return
		}
		out, err := yaml.Marshal(c)
		if err != nil {
			t.Fatalf("a loaded config does not marshal to YAML: %v", err)
		}
		path = filepath.Join(dir, "again.yaml")
		if err := os.WriteFile(path, out, 0o644); err != nil {
			t.Fatal(err)
		}
		c2 := DefaultConfig()
		if err := LoadFile(path, &c2); err != nil {
			t.Fatalf("a loaded config, written as YAML, does not load: %v\n%s", err, out)
		}
		out2, err := yaml.Marshal(c2)
		if err != nil {
			t.Fatal(err)
		}
		if string(out) != string(out2) { // bytes, not values: NaN is allowed in YAML
			t.Fatalf("YAML round trip changed the config:\n%s\n%s", out, out2)
		}
		if _, err := json.Marshal(c); err == nil { // no NaN or infinity
			configRoundTripJSON(t, dir, c)
		}
	})
}

// configRoundTripJSON writes c as a JSON config file and checks that it
// loads to c.
func configRoundTripJSON(t *testing.T, dir string, c Config) {
	t.Helper()
	out, err := json.Marshal(c)
	if err != nil {
		t.Fatalf("a loaded config does not marshal to JSON: %v", err)
	}
	path := filepath.Join(dir, "again.json")
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
	c2 := DefaultConfig()
	if err := LoadFile(path, &c2); err != nil {
		t.Fatalf("a loaded config, written as JSON, does not load: %v\n%s", err, out)
	}
	if !reflect.DeepEqual(c2, c) {
		t.Fatalf("JSON round trip: %+v, want %+v", c2, c)
	}
}
