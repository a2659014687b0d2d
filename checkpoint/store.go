package checkpoint

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

const (
	stepPrefix = "step-"
	tmpPrefix  = ".tmp-"
	// replacedSuffix names, after its .tmp-* directory, the directory
	// into which Save moves the checkpoint it replaces.
	replacedSuffix = "-replaced"
)

// Checkpoint is a loaded, verified checkpoint.
type Checkpoint struct {
	// Dir is the step directory it was loaded from.
	Dir      string
	Manifest Manifest
	// Model and Optimizer hold the tensors in sorted name order.
	Model     []Tensor
	Optimizer []Tensor
}

// DirName returns the name of the directory of step: step-%08d.
func DirName(step int64) string {
	return fmt.Sprintf("%s%08d", stepPrefix, step)
}

// parseDirName returns the step of a step directory name.
func parseDirName(name string) (int64, bool) {
	digits, ok := strings.CutPrefix(name, stepPrefix)
	if !ok || digits == "" || strings.Trim(digits, "0123456789") != "" {
		return 0, false
	}
	step, err := strconv.ParseInt(digits, 10, 64)
	return step, err == nil
}

// Save writes a checkpoint of model and optimizer at step m.Step under root
// and returns its directory, root/step-%08d. It fills m.FormatVersion,
// m.Files, m.Created (if zero) and m.Run (with {} if empty).
//
// The files are written into root/.tmp-step-*, each fsynced, then the
// directory is fsynced, renamed to its final name and root fsynced. An
// existing directory for the same step is replaced only once the new one
// is complete and durable: it is moved aside, the new one renamed in, and
// the old one removed.
func Save(root string, m Manifest, model, optimizer []Tensor) (dir string, err error) {
	if m.Step < 0 {
		return "", fmt.Errorf("%w: step %d is negative", ErrInvalid, m.Step)
	}
	if len(bytes.TrimSpace(m.Run)) == 0 {
		m.Run = json.RawMessage("{}")
	}
	if !json.Valid(m.Run) || bytes.TrimSpace(m.Run)[0] != '{' {
		return "", fmt.Errorf("%w: Manifest.Run must be a JSON object, got %.40q", ErrInvalid, m.Run)
	}
	if len(m.Metrics) > 0 && !json.Valid(m.Metrics) {
		return "", fmt.Errorf("%w: Manifest.Metrics is not valid JSON: %.40q", ErrInvalid, m.Metrics)
	}
	if m.Created.IsZero() {
		m.Created = time.Now().UTC().Truncate(time.Second)
	}
	m.FormatVersion = FormatVersion

	if err := os.MkdirAll(root, 0o755); err != nil {
		return "", fmt.Errorf("checkpoint: %w", err)
	}
	tmp, err := os.MkdirTemp(root, tmpPrefix+DirName(m.Step)+"-")
	if err != nil {
		return "", fmt.Errorf("checkpoint: %w", err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(tmp)
		}
	}()

	m.Files = map[string]string{}
	for _, f := range []struct {
		name    string
		tensors []Tensor
	}{{ModelFile, model}, {OptimizerFile, optimizer}} {
		sum, err := writeFileSync(filepath.Join(tmp, f.name), func(w io.Writer) error {
			return WriteSafetensors(w, f.tensors, nil)
		})
		if err != nil {
			return "", fmt.Errorf("%s: %w", f.name, err)
		}
		m.Files[f.name] = sum
	}
	manifest, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return "", fmt.Errorf("%w: manifest: %w", ErrInvalid, err)
	}
	manifest = append(manifest, '\n')
	if _, err := writeFileSync(filepath.Join(tmp, ManifestFile), func(w io.Writer) error {
		_, err := w.Write(manifest)
		return err
	}); err != nil {
		return "", err
	}
	if err := syncDir(tmp); err != nil {
		return "", err
	}
	return publish(root, tmp, DirName(m.Step))
}

// publish renames the complete, durable directory tmp to root/name,
// replacing an existing one without ever leaving neither on disk.
func publish(root, tmp, name string) (string, error) {
	final := filepath.Join(root, name)
	replaced := ""
	if _, err := os.Lstat(final); err == nil {
		replaced = tmp + replacedSuffix
		if err := os.Rename(final, replaced); err != nil {
			return "", fmt.Errorf("checkpoint: move aside the existing %s: %w", final, err)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("checkpoint: %w", err)
	}
	if err := os.Rename(tmp, final); err != nil {
		if replaced != "" {
			os.Rename(replaced, final) // put the old one back
		}
		return "", fmt.Errorf("checkpoint: publish %s: %w", final, err)
	}
	if err := syncDir(root); err != nil {
		return "", err
	}
	if replaced != "" {
		if err := os.RemoveAll(replaced); err != nil {
			return "", fmt.Errorf("checkpoint: remove the replaced %s: %w", replaced, err)
		}
	}
	return final, nil
}

// writeFileSync creates path, fills it with write, fsyncs and closes it,
// and returns the hex SHA-256 of what was written.
func writeFileSync(path string, write func(io.Writer) error) (sum string, err error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return "", fmt.Errorf("checkpoint: %w", err)
	}
	defer func() {
		if cerr := f.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("checkpoint: close %s: %w", path, cerr)
		}
	}()
	h := sha256.New()
	if err := write(io.MultiWriter(f, h)); err != nil {
		return "", err
	}
	if err := f.Sync(); err != nil {
		return "", fmt.Errorf("checkpoint: fsync %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// syncDir fsyncs a directory so that entries created in it are durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("checkpoint: fsync directory %s: %w", dir, err)
	}
	return nil
}

// Load reads the checkpoint in dir and verifies it: the manifest's
// format_version, the SHA-256 of every file it lists, and the tensor files'
// structure. A file that does not match its hash gives an error wrapping
// ErrCorrupt that names the file and both hashes.
func Load(dir string) (*Checkpoint, error) {
	manifestPath := filepath.Join(dir, ManifestFile)
	raw, err := os.ReadFile(manifestPath)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s is missing; the checkpoint is incomplete", ErrCorrupt, manifestPath)
	}
	if err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	c := &Checkpoint{Dir: dir}
	m := &c.Manifest
	if err := json.Unmarshal(raw, m); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrCorrupt, manifestPath, err)
	}
	switch {
	case m.FormatVersion == 0:
		return nil, fmt.Errorf("%w: %s has no format_version", ErrCorrupt, manifestPath)
	case m.FormatVersion != FormatVersion:
		return nil, fmt.Errorf("%w: %s has format_version %d; this ringtrain reads version %d, use a ringtrain that matches the one that wrote it",
			ErrUnsupported, manifestPath, m.FormatVersion, FormatVersion)
	}
	if step, ok := parseDirName(filepath.Base(dir)); ok && step != m.Step {
		return nil, fmt.Errorf("%w: %s says step %d but its directory is for step %d", ErrCorrupt, manifestPath, m.Step, step)
	}
	for _, name := range []string{ModelFile, OptimizerFile} {
		if _, ok := m.Files[name]; !ok {
			return nil, fmt.Errorf("%w: %s lists no hash for %s", ErrCorrupt, manifestPath, name)
		}
	}
	names := make([]string, 0, len(m.Files))
	for name := range m.Files {
		names = append(names, name)
	}
	slices.Sort(names)
	contents := map[string][]byte{}
	for _, name := range names {
		if name != filepath.Base(name) || name == "." || name == ".." || strings.ContainsAny(name, `/\`) {
			return nil, fmt.Errorf("%w: %s lists file %q, which is not a plain file name", ErrCorrupt, manifestPath, name)
		}
		path := filepath.Join(dir, name)
		b, err := os.ReadFile(path)
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%w: %s is missing", ErrCorrupt, path)
		}
		if err != nil {
			return nil, fmt.Errorf("checkpoint: %w", err)
		}
		sum := sha256.Sum256(b)
		if got, want := hex.EncodeToString(sum[:]), strings.ToLower(m.Files[name]); got != want {
			return nil, fmt.Errorf("%w: %s has sha256 %s, manifest expects %s", ErrCorrupt, path, got, want)
		}
		contents[name] = b
	}
	if c.Model, _, err = decodeSafetensors(contents[ModelFile]); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, ModelFile), err)
	}
	if c.Optimizer, _, err = decodeSafetensors(contents[OptimizerFile]); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, OptimizerFile), err)
	}
	return c, nil
}

// List returns the step directories under root, sorted by step ascending.
// Temporary .tmp-* directories and anything else are ignored; a root that
// does not exist holds no checkpoints.
func List(root string) ([]string, error) {
	entries, err := os.ReadDir(root)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	type stepDir struct {
		step int64
		name string
	}
	var dirs []stepDir
	for _, e := range entries {
		if step, ok := parseDirName(e.Name()); ok && e.IsDir() {
			dirs = append(dirs, stepDir{step, e.Name()})
		}
	}
	slices.SortFunc(dirs, func(a, b stepDir) int {
		return cmp.Or(cmp.Compare(a.step, b.step), strings.Compare(a.name, b.name))
	})
	paths := make([]string, len(dirs))
	for i, d := range dirs {
		paths[i] = filepath.Join(root, d.name)
	}
	return paths, nil
}

// LatestValid returns the newest checkpoint under root that loads. Each
// newer one that does not load is skipped and reported to warn, if warn is
// not nil. It returns an error wrapping ErrNoCheckpoint when none loads.
func LatestValid(root string, warn func(dir string, err error)) (*Checkpoint, error) {
	dirs, err := List(root)
	if err != nil {
		return nil, err
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		c, err := Load(dirs[i])
		if err == nil {
			return c, nil
		}
		if warn != nil {
			warn(dirs[i], err)
		}
	}
	return nil, fmt.Errorf("%w under %s (%d step directories, none loads)", ErrNoCheckpoint, root, len(dirs))
}

// StaleTempAge is how long a .tmp-* directory under a checkpoint root must
// have gone unmodified before [Prune] treats it as abandoned and removes
// it. It is far longer than any Save takes, so a directory that another
// process (a new rank 0 after a membership change) is writing right now is
// never removed.
const StaleTempAge = 10 * time.Minute

// Prune removes all but the newest keep step directories under root, and
// the .tmp-* directories that Saves left behind when they crashed. keep
// must be at least 1.
//
// A .tmp-* directory is removed only when it is stale: neither it nor any
// file in it has been modified for StaleTempAge. Save creates and writes
// its files one after the other, so a directory still being written stays
// fresh and survives. The .tmp-*-replaced directory into which Save moves
// the checkpoint it replaces is kept as long as the .tmp-* directory that
// replaces it is fresh, so that a failed rename can still put it back.
// Prune may therefore run while Saves, in this process or another, write
// to root; only a Save stalled for longer than StaleTempAge can lose its
// temporary directory, and then fails.
func Prune(root string, keep int) error {
	return prune(root, keep, time.Now())
}

// prune is Prune at time now.
func prune(root string, keep int, now time.Time) error {
	if keep < 1 {
		return fmt.Errorf("%w: Prune keep=%d would delete every checkpoint; keep at least 1", ErrInvalid, keep)
	}
	dirs, err := List(root)
	if err != nil {
		return err
	}
	var errs []error
	for _, d := range dirs[:max(0, len(dirs)-keep)] {
		if err := os.RemoveAll(d); err != nil {
			errs = append(errs, fmt.Errorf("checkpoint: prune: %w", err))
		}
	}
	entries, err := os.ReadDir(root)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		errs = append(errs, fmt.Errorf("checkpoint: prune: %w", err))
	}
	fresh := func(name string) bool {
		modified, err := lastModified(filepath.Join(root, name))
		if errors.Is(err, fs.ErrNotExist) {
			return false // published or removed meanwhile: nothing to keep
		}
		// One that cannot be read is left for a later Prune.
		return err != nil || now.Sub(modified) < StaleTempAge
	}
	for _, e := range entries {
		name := e.Name()
		if !strings.HasPrefix(name, tmpPrefix) || fresh(name) {
			continue
		}
		if writing, ok := strings.CutSuffix(name, replacedSuffix); ok && fresh(writing) {
			continue
		}
		if err := os.RemoveAll(filepath.Join(root, name)); err != nil {
			errs = append(errs, fmt.Errorf("checkpoint: prune: %w", err))
		}
	}
	return errors.Join(errs...)
}

// lastModified returns the newest modification time of path and, if it
// is a directory, of the entries directly in it.
func lastModified(path string) (time.Time, error) {
	info, err := os.Lstat(path)
	if err != nil {
		return time.Time{}, err
	}
	newest := info.ModTime()
	if !info.IsDir() {
		return newest, nil
	}
	entries, err := os.ReadDir(path)
	if err != nil {
		return time.Time{}, err
	}
	for _, e := range entries {
		info, err := e.Info()
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return time.Time{}, err
		}
		if t := info.ModTime(); t.After(newest) {
			newest = t
		}
	}
	return newest, nil
}
