package checkpoint

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// FuzzLoadManifest fuzzes manifest.json in a checkpoint directory whose
// tensor files are real, so that inputs which keep the seeds' hashes reach
// past the hash checks. Load must return an error (wrapping ErrCorrupt or
// ErrUnsupported) or a checkpoint whose manifest names both tensor files,
// has this format version and this directory's step, holds the saved
// tensors, and re-serialises to JSON that parses back to the same value.
func FuzzLoadManifest(f *testing.F) {
	const step = 7
	model, optimizer := []Tensor{{Name: "w", Shape: []int{2}, Data: []float32{1, -1}}}, []Tensor{{Name: "m", Data: []float32{0.5}}}
	dir, err := Save(f.TempDir(), Manifest{
		Step: step, Epoch: 1, Cursor: Cursor{Epoch: 1, Step: 3}, Seed: 42,
		Run:     json.RawMessage(`{"layers":"2-1","lr":0.05}`),
		Metrics: json.RawMessage(`{"loss":[1,0.5]}`),
		Created: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
	}, model, optimizer)
	if err != nil {
		f.Fatal(err)
	}
	manifestPath := filepath.Join(dir, ManifestFile)
	valid, err := os.ReadFile(manifestPath)
	if err != nil {
		f.Fatal(err)
	}
	var m Manifest
	if err := json.Unmarshal(valid, &m); err != nil {
		f.Fatal(err)
	}
	edit := func(change func(*Manifest)) []byte {
		c := m
		c.Files = map[string]string{}
		for k, v := range m.Files {
			c.Files[k] = v
		}
		change(&c)
		b, err := json.Marshal(c)
		if err != nil {
			f.Fatal(err)
		}
		return b
	}
	f.Add(valid)
	f.Add(edit(func(c *Manifest) { c.FormatVersion = FormatVersion + 1 }))
	f.Add(edit(func(c *Manifest) { c.FormatVersion = 0 }))
	f.Add(edit(func(c *Manifest) { c.Step = step + 1 }))
	f.Add(edit(func(c *Manifest) { c.Files["../"+ModelFile] = c.Files[ModelFile] }))
	f.Add(edit(func(c *Manifest) { delete(c.Files, OptimizerFile) }))
	f.Add(edit(func(c *Manifest) { c.Files[ModelFile] = strings.ToUpper(c.Files[ModelFile]) }))
	f.Add(edit(func(c *Manifest) { c.Run, c.Metrics = json.RawMessage(`null`), nil }))
	f.Add(edit(func(c *Manifest) { c.Created = c.Created.In(time.FixedZone("", -(23*3600 + 59*60))) }))
	f.Add([]byte(`{"format_version":1,"step":7,"FILES":{},"created":"0000-01-01T00:00:00Z"}`))
	f.Add([]byte(`{"format_version":1e400}`))
	f.Add([]byte(`[]`))
	f.Add([]byte{})

	f.Fuzz(func(t *testing.T, b []byte) {
		if err := os.WriteFile(manifestPath, b, 0o644); err != nil {
			t.Fatal(err)
		}
		c, err := Load(dir)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrUnsupported) {
				t.Fatalf("error wraps neither ErrCorrupt nor ErrUnsupported: %v", err)
			}
			if c != nil {
				t.Fatalf("error %v came with a checkpoint", err)
			}
			return
		}
		m := c.Manifest
		if m.FormatVersion != FormatVersion || m.Step != step {
			t.Fatalf("loaded format_version %d, step %d; want %d, %d", m.FormatVersion, m.Step, FormatVersion, step)
		}
		if _, ok := m.Files[ModelFile]; !ok {
			t.Fatalf("loaded a manifest without %s: %v", ModelFile, m.Files)
		}
		if _, ok := m.Files[OptimizerFile]; !ok {
			t.Fatalf("loaded a manifest without %s: %v", OptimizerFile, m.Files)
		}
		if !equalTensors(c.Model, model) || !equalTensors(c.Optimizer, optimizer) {
			t.Fatalf("loaded tensors %v, %v; want %v, %v", c.Model, c.Optimizer, model, optimizer)
		}

		out, err := json.MarshalIndent(m, "", "  ")
		if err != nil {
			t.Fatalf("a manifest that loads does not re-serialise: %v", err)
		}
		var m2 Manifest
		if err := json.Unmarshal(out, &m2); err != nil {
			t.Fatalf("a re-serialised manifest does not parse: %v\n%s", err, out)
		}
		out2, err := json.MarshalIndent(m2, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out, out2) {
			t.Fatalf("re-serialised manifest changes on a second round trip:\n%s\n%s", out, out2)
		}
		// Run and Metrics come back compacted; everything else as loaded.
		if !m2.Created.Equal(m.Created) {
			t.Fatalf("created %v, want %v", m2.Created, m.Created)
		}
		m.Run, m.Metrics, m.Created = nil, nil, time.Time{}
		m2.Run, m2.Metrics, m2.Created = nil, nil, time.Time{}
		if !reflect.DeepEqual(m, m2) {
			t.Fatalf("manifest round trip: %+v, want %+v", m2, m)
		}
	})
}

func equalTensors(a, b []Tensor) bool {
	return slices.EqualFunc(a, b, func(x, y Tensor) bool {
		return x.Name == y.Name && slices.Equal(x.Shape, y.Shape) && sameBits(x.Data, y.Data)
	})
}
