package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// smallDisk mounts a tmpfs of size bytes (root only) and returns its path.
func smallDisk(t *testing.T, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		missingTool(t, "mounting a small tmpfs needs root", "run the tests as root (CI does)")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount -t tmpfs: %v\n%s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", dir).Run() }) //nolint:errcheck // best effort
	return dir
}

// A checkpoint root that cannot be written is one usage error before any
// training.
func TestUnwritableCheckpointDirExits2(t *testing.T) {
	ro := t.TempDir()
	file := filepath.Join(ro, "a-file")
	os.WriteFile(file, nil, 0o644)
	code, _, errs := runCLI("train", "--layers", "784-16-10", "--steps", "5", "--checkpoint-dir", filepath.Join(file, "sub"))
	if code != 2 || !strings.Contains(errs, "--checkpoint-dir") || strings.Count(strings.TrimSpace(errs), "\n") != 0 {
		t.Fatalf("exit %d, stderr %q: want exit 2 and one line naming --checkpoint-dir", code, errs)
	}
}

// A full disk while checkpointing: the run goes on, the previous checkpoint
// stays intact (eval loads it), no partial directory is left behind, and
// only the final checkpoint's failure is an error (exit 1) naming the
// newest checkpoint on disk.
func TestFullDiskKeepsThePreviousCheckpoint(t *testing.T) {
	// One checkpoint of 784-16-10 (model and momentum, ~102 KB) fits, a
	// second does not.
	disk := smallDisk(t, "160k")
	code, _, errs := runCLI("train", "--layers", "784-16-10", "--steps", "40", "--checkpoint-every", "10", "--checkpoint-dir", disk)
	if code != 1 || !strings.Contains(errs, "final checkpoint (step 40)") || !strings.Contains(errs, "step-00000010") {
		t.Fatalf("exit %d, stderr %q: want exit 1 naming the final checkpoint and step-00000010", code, errs)
	}
	if !strings.Contains(errs, "checkpoint failed; training goes on") {
		t.Errorf("no warning for the checkpoints that failed: %q", errs)
	}
	entries, _ := os.ReadDir(disk)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if len(names) != 1 || names[0] != "step-00000010" {
		t.Fatalf("the disk holds %v, want only step-00000010 (no partial directories)", names)
	}
	if code, out, errs := runCLI("eval", "--checkpoint", filepath.Join(disk, "step-00000010")); code != 0 || !strings.Contains(out, "test_accuracy") {
		t.Fatalf("eval of the surviving checkpoint: exit %d %q %q", code, out, errs)
	}
}
