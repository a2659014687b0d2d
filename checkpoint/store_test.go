package checkpoint

import (
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

var testLayers = []int{4, 3, 2}

// testState returns model and optimizer tensors whose values depend on v.
func testState(v float32) (model, optimizer []Tensor) {
	params := make([]float32, paramCount(testLayers))
	for i := range params {
		params[i] = v + float32(i)/8
	}
	velocity := make([]float32, len(params))
	for i := range velocity {
		velocity[i] = -v * float32(i)
	}
	return ModelTensors(testLayers, params), []Tensor{{Name: "momentum", Shape: []int{len(velocity)}, Data: velocity}}
}

func saveStep(t *testing.T, root string, step int64) string {
	t.Helper()
	model, opt := testState(float32(step))
	dir, err := Save(root, Manifest{Step: step, Seed: 1}, model, opt)
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

func entries(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

func TestSaveLoadRoundTrip(t *testing.T) {
	root := filepath.Join(t.TempDir(), "ckpt") // Save creates it
	model, opt := testState(0.25)
	created := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	m := Manifest{
		Step:    123,
		Epoch:   2,
		Cursor:  Cursor{Epoch: 2, Step: 5},
		Seed:    1<<63 + 7,
		Run:     json.RawMessage(`{"layers":[4,3,2],"optimizer":{"name":"sgd","lr":0.1}}`),
		Metrics: json.RawMessage(`{"loss":[2.3,1.1]}`),
		Created: created,
	}
	dir, err := Save(root, m, model, opt)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(root, "step-00000123"); dir != want {
		t.Fatalf("dir = %s, want %s", dir, want)
	}
	if got := entries(t, root); !slices.Equal(got, []string{"step-00000123"}) {
		t.Fatalf("root holds %v, want only the step directory", got)
	}
	if got := entries(t, dir); !slices.Equal(got, []string{ManifestFile, ModelFile, OptimizerFile}) {
		t.Fatalf("step dir holds %v", got)
	}

	c, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	got := c.Manifest
	if c.Dir != dir || got.FormatVersion != 1 || got.Step != 123 || got.Epoch != 2 || got.Cursor != m.Cursor ||
		got.Seed != m.Seed || !got.Created.Equal(created) {
		t.Fatalf("manifest = %+v", got)
	}
	var run, wantRun any
	json.Unmarshal(got.Run, &run)
	json.Unmarshal(m.Run, &wantRun)
	if !reflect.DeepEqual(run, wantRun) {
		t.Fatalf("run = %s, want %s", got.Run, m.Run)
	}
	if len(got.Files) != 2 || len(got.Files[ModelFile]) != 64 || len(got.Files[OptimizerFile]) != 64 {
		t.Fatalf("files = %v", got.Files)
	}
	params := make([]float32, paramCount(testLayers))
	if err := ParamsFromTensors(testLayers, c.Model, params); err != nil {
		t.Fatal(err)
	}
	wantModel, _ := testState(0.25)
	if !reflect.DeepEqual(ModelTensors(testLayers, params), wantModel) {
		t.Fatalf("model = %v, want %v", c.Model, wantModel)
	}
	if !reflect.DeepEqual(c.Optimizer, opt) {
		t.Fatalf("optimizer = %v, want %v", c.Optimizer, opt)
	}

	// The manifest uses exactly the documented keys.
	raw, err := os.ReadFile(filepath.Join(dir, ManifestFile))
	if err != nil {
		t.Fatal(err)
	}
	var keys map[string]json.RawMessage
	if err := json.Unmarshal(raw, &keys); err != nil {
		t.Fatal(err)
	}
	var names []string
	for k := range keys {
		names = append(names, k)
	}
	slices.Sort(names)
	if want := []string{"created", "cursor", "epoch", "files", "format_version", "metrics", "run", "seed", "step"}; !slices.Equal(names, want) {
		t.Fatalf("manifest keys %v, want %v", names, want)
	}
	if !strings.Contains(string(raw), `"created": "2025-01-02T03:04:05Z"`) ||
		!strings.Contains(string(raw), `"cursor": {`) {
		t.Fatalf("manifest.json:\n%s", raw)
	}
}

func TestSaveDefaults(t *testing.T) {
	root := t.TempDir()
	before := time.Now().Add(-time.Second)
	dir := saveStep(t, root, 0)
	c, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if string(c.Manifest.Run) != "{}" || c.Manifest.Metrics != nil || c.Manifest.Created.Before(before) {
		t.Fatalf("manifest = %+v", c.Manifest)
	}
}

func TestSaveInvalid(t *testing.T) {
	model, opt := testState(1)
	for name, m := range map[string]Manifest{
		"negative step":  {Step: -1},
		"run not object": {Run: json.RawMessage(`[1]`)},
		"run not json":   {Run: json.RawMessage(`{`)},
		"metrics bad":    {Metrics: json.RawMessage(`{`)},
	} {
		t.Run(name, func(t *testing.T) {
			root := t.TempDir()
			if _, err := Save(root, m, model, opt); !errors.Is(err, ErrInvalid) {
				t.Fatalf("err = %v, want ErrInvalid", err)
			}
			if got := entries(t, root); len(got) != 0 {
				t.Fatalf("root holds %v after a failed Save", got)
			}
		})
	}
	t.Run("bad tensor leaves no temp dir", func(t *testing.T) {
		root := t.TempDir()
		bad := []Tensor{{Name: "x", Shape: []int{3}, Data: []float32{1}}}
		if _, err := Save(root, Manifest{Step: 1}, bad, opt); !errors.Is(err, ErrInvalid) {
			t.Fatalf("err = %v, want ErrInvalid", err)
		}
		if got := entries(t, root); len(got) != 0 {
			t.Fatalf("root holds %v after a failed Save", got)
		}
	})
}

func TestSaveReplacesSameStep(t *testing.T) {
	root := t.TempDir()
	model, opt := testState(1)
	if _, err := Save(root, Manifest{Step: 5}, model, opt); err != nil {
		t.Fatal(err)
	}
	model2, opt2 := testState(2)
	dir, err := Save(root, Manifest{Step: 5, Epoch: 9}, model2, opt2)
	if err != nil {
		t.Fatal(err)
	}
	c, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if c.Manifest.Epoch != 9 || !reflect.DeepEqual(c.Optimizer, opt2) {
		t.Fatalf("loaded the old checkpoint: %+v", c.Manifest)
	}
	if got := entries(t, root); !slices.Equal(got, []string{"step-00000005"}) {
		t.Fatalf("root holds %v", got)
	}
}

// flipByte inverts one byte of path, in the middle of the file.
func flipByte(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0x01
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestLoadCorrupt(t *testing.T) {
	t.Run("flipped byte", func(t *testing.T) {
		dir := saveStep(t, t.TempDir(), 7)
		c, _ := Load(dir)
		path := filepath.Join(dir, ModelFile)
		flipByte(t, path)
		_, err := Load(dir)
		if !errors.Is(err, ErrCorrupt) {
			t.Fatalf("err = %v, want ErrCorrupt", err)
		}
		for _, want := range []string{path, "manifest expects " + c.Manifest.Files[ModelFile], "sha256 "} {
			if !strings.Contains(err.Error(), want) {
				t.Fatalf("err = %q, want it to contain %q", err, want)
			}
		}
	})
	t.Run("missing file", func(t *testing.T) {
		dir := saveStep(t, t.TempDir(), 7)
		os.Remove(filepath.Join(dir, OptimizerFile))
		if _, err := Load(dir); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), OptimizerFile+" is missing") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("missing manifest", func(t *testing.T) {
		dir := saveStep(t, t.TempDir(), 7)
		os.Remove(filepath.Join(dir, ManifestFile))
		if _, err := Load(dir); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "incomplete") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("torn manifest", func(t *testing.T) {
		dir := saveStep(t, t.TempDir(), 7)
		os.WriteFile(filepath.Join(dir, ManifestFile), []byte(`{"format_version":1,"st`), 0o644)
		if _, err := Load(dir); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("newer format", func(t *testing.T) {
		dir := saveStep(t, t.TempDir(), 7)
		editManifest(t, dir, func(m map[string]any) { m["format_version"] = 2 })
		if _, err := Load(dir); !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "format_version 2") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("path in files", func(t *testing.T) {
		dir := saveStep(t, t.TempDir(), 7)
		editManifest(t, dir, func(m map[string]any) { m["files"].(map[string]any)["../x"] = "00" })
		if _, err := Load(dir); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "not a plain file name") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("wrong directory", func(t *testing.T) {
		root := t.TempDir()
		dir := saveStep(t, root, 7)
		other := filepath.Join(root, DirName(8))
		os.Rename(dir, other)
		if _, err := Load(other); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "says step 7") {
			t.Fatalf("err = %v", err)
		}
	})
}

func editManifest(t *testing.T, dir string, edit func(map[string]any)) {
	t.Helper()
	path := filepath.Join(dir, ManifestFile)
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	edit(m)
	raw, _ = json.Marshal(m)
	if err := os.WriteFile(path, raw, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestList(t *testing.T) {
	root := t.TempDir()
	for _, step := range []int64{20, 3, 100_000_000} {
		saveStep(t, root, step)
	}
	for _, d := range []string{".tmp-step-00000030-123", "step-", "step-abc", "other"} {
		os.Mkdir(filepath.Join(root, d), 0o755)
	}
	os.WriteFile(filepath.Join(root, "step-00000040"), nil, 0o644) // a file, not a directory
	got, err := List(root)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{filepath.Join(root, "step-00000003"), filepath.Join(root, "step-00000020"), filepath.Join(root, "step-100000000")}
	if !slices.Equal(got, want) {
		t.Fatalf("List = %v, want %v", got, want)
	}
	if got, err := List(filepath.Join(root, "absent")); err != nil || got != nil {
		t.Fatalf("List(absent) = %v, %v", got, err)
	}
}

func TestLatestValid(t *testing.T) {
	root := t.TempDir()
	for _, step := range []int64{10, 20, 30} {
		saveStep(t, root, step)
	}
	newest := filepath.Join(root, DirName(30))
	flipByte(t, filepath.Join(newest, ModelFile))
	// A crash mid-Save leaves a temp dir, which must not count.
	os.Mkdir(filepath.Join(root, ".tmp-step-00000040-1"), 0o755)

	var warned []string
	c, err := LatestValid(root, func(dir string, err error) {
		if !errors.Is(err, ErrCorrupt) {
			t.Errorf("warn(%s) with %v, want ErrCorrupt", dir, err)
		}
		warned = append(warned, dir)
	})
	if err != nil {
		t.Fatal(err)
	}
	if c.Manifest.Step != 20 || c.Dir != filepath.Join(root, DirName(20)) {
		t.Fatalf("LatestValid = step %d in %s, want step 20", c.Manifest.Step, c.Dir)
	}
	if !slices.Equal(warned, []string{newest}) {
		t.Fatalf("warned about %v, want [%s]", warned, newest)
	}

	for _, step := range []int64{10, 20} {
		flipByte(t, filepath.Join(root, DirName(step), OptimizerFile))
	}
	warned = nil
	if _, err := LatestValid(root, func(dir string, _ error) { warned = append(warned, dir) }); !errors.Is(err, ErrNoCheckpoint) {
		t.Fatalf("err = %v, want ErrNoCheckpoint", err)
	}
	if len(warned) != 3 {
		t.Fatalf("warned %d times, want 3", len(warned))
	}
	if _, err := LatestValid(t.TempDir(), nil); !errors.Is(err, ErrNoCheckpoint) {
		t.Fatalf("empty root: err = %v, want ErrNoCheckpoint", err)
	}
}

func TestPrune(t *testing.T) {
	root := t.TempDir()
	for step := int64(1); step <= 5; step++ {
		saveStep(t, root, step)
	}
	stale := filepath.Join(root, ".tmp-step-00000006-99")
	os.Mkdir(stale, 0o755)
	age(t, stale, StaleTempAge+time.Minute)
	os.WriteFile(filepath.Join(root, "notes.txt"), nil, 0o644)
	if err := Prune(root, 2); err != nil {
		t.Fatal(err)
	}
	if got := entries(t, root); !slices.Equal(got, []string{"notes.txt", "step-00000004", "step-00000005"}) {
		t.Fatalf("after Prune(2): %v", got)
	}
	if err := Prune(root, 5); err != nil {
		t.Fatal(err)
	}
	if got, _ := List(root); len(got) != 2 {
		t.Fatalf("Prune(5) removed checkpoints: %v", got)
	}
	if err := Prune(root, 0); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Prune(0): err = %v, want ErrInvalid", err)
	}
	if err := Prune(filepath.Join(root, "absent"), 1); err != nil {
		t.Fatalf("Prune(absent) = %v", err)
	}
}

// age sets the modification time of path to d before now.
func age(t *testing.T, path string, d time.Duration) {
	t.Helper()
	then := time.Now().Add(-d)
	if err := os.Chtimes(path, then, then); err != nil {
		t.Fatal(err)
	}
}

// TestPruneKeepsTempInFlight: a Save that another process is writing
// right now survives Prune and still publishes; only temporary
// directories unmodified for StaleTempAge are removed.
func TestPruneKeepsTempInFlight(t *testing.T) {
	root := t.TempDir()
	saveStep(t, root, 1)
	model, opt := testState(2)

	// A Save of step 2 halfway through: its directory exists and holds
	// the model file, the optimizer file and manifest are yet to come.
	tmp, err := os.MkdirTemp(root, tmpPrefix+DirName(2)+"-")
	if err != nil {
		t.Fatal(err)
	}
	modelSum, err := writeFileSync(filepath.Join(tmp, ModelFile), func(w io.Writer) error {
		return WriteSafetensors(w, model, nil)
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := Prune(root, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(tmp); err != nil {
		t.Fatalf("Prune removed the temporary directory of a Save in progress: %v", err)
	}

	// The Save goes on and publishes; the result loads.
	optSum, err := writeFileSync(filepath.Join(tmp, OptimizerFile), func(w io.Writer) error {
		return WriteSafetensors(w, opt, nil)
	})
	if err != nil {
		t.Fatal(err)
	}
	m := Manifest{FormatVersion: FormatVersion, Step: 2, Run: json.RawMessage("{}"),
		Files: map[string]string{ModelFile: modelSum, OptimizerFile: optSum}}
	raw, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tmp, ManifestFile), raw, 0o644); err != nil {
		t.Fatal(err)
	}
	dir, err := publish(root, tmp, DirName(2))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Load(dir); err != nil {
		t.Fatal(err)
	}
}

func TestPruneStaleTemp(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	// mkdir creates root/name holding the files, with the directory
	// modified dirAge and every file fileAge before now.
	mkdir := func(t *testing.T, root, name string, dirAge, fileAge time.Duration, files ...string) {
		t.Helper()
		dir := filepath.Join(root, name)
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			path := filepath.Join(dir, f)
			if err := os.WriteFile(path, []byte("x"), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Chtimes(path, now.Add(-fileAge), now.Add(-fileAge)); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.Chtimes(dir, now.Add(-dirAge), now.Add(-dirAge)); err != nil {
			t.Fatal(err)
		}
	}
	const (
		fresh = time.Second
		stale = StaleTempAge
	)
	for _, tc := range []struct {
		name string
		// setup creates the entries of root.
		setup func(t *testing.T, root string)
		want  []string
	}{
		{"fresh directory", func(t *testing.T, root string) {
			mkdir(t, root, ".tmp-step-00000002-1", fresh, fresh)
		}, []string{".tmp-step-00000002-1"}},
		{"stale directory", func(t *testing.T, root string) {
			mkdir(t, root, ".tmp-step-00000002-1", stale, stale, ModelFile)
		}, nil},
		{"just under the bound", func(t *testing.T, root string) {
			mkdir(t, root, ".tmp-step-00000002-1", stale-time.Second, stale-time.Second)
		}, []string{".tmp-step-00000002-1"}},
		{"old directory, file being written", func(t *testing.T, root string) {
			mkdir(t, root, ".tmp-step-00000002-1", 3*stale, fresh, ModelFile, OptimizerFile)
		}, []string{".tmp-step-00000002-1"}},
		{"old directory, every file old", func(t *testing.T, root string) {
			mkdir(t, root, ".tmp-step-00000002-1", 3*stale, 2*stale, ModelFile, OptimizerFile)
		}, nil},
		{"replaced checkpoint while its replacement is written", func(t *testing.T, root string) {
			mkdir(t, root, ".tmp-step-00000002-1", fresh, fresh, ModelFile)
			mkdir(t, root, ".tmp-step-00000002-1-replaced", 5*stale, 5*stale, ModelFile)
		}, []string{".tmp-step-00000002-1", ".tmp-step-00000002-1-replaced"}},
		{"replaced checkpoint left behind", func(t *testing.T, root string) {
			mkdir(t, root, ".tmp-step-00000002-1-replaced", 5*stale, 5*stale, ModelFile)
		}, nil},
		{"stale replacement and its replaced checkpoint", func(t *testing.T, root string) {
			mkdir(t, root, ".tmp-step-00000002-1", stale, stale, ModelFile)
			mkdir(t, root, ".tmp-step-00000002-1-replaced", 5*stale, 5*stale, ModelFile)
		}, nil},
		{"other directories are not temporary", func(t *testing.T, root string) {
			mkdir(t, root, "tmp-step-00000002-1", 5*stale, 5*stale)
			mkdir(t, root, "notes", 5*stale, 5*stale)
		}, []string{"notes", "tmp-step-00000002-1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			tc.setup(t, root)
			if err := prune(root, 1, now); err != nil {
				t.Fatal(err)
			}
			if got := entries(t, root); !slices.Equal(got, tc.want) {
				t.Fatalf("after prune: %q, want %q", got, tc.want)
			}
		})
	}
}
