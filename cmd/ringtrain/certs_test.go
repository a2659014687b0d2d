package main

import (
	"crypto/tls"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ringtrain/ringtrain/internal/pki"
)

func TestCertsWritesTheLayoutAndRefusesToOverwrite(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	code, out, errs := runCLI("certs", "--out", dir, "--run", "r1", "--workers", "2", "--worker-ids", "w9", "--coordinators", "c1")
	if code != 0 {
		t.Fatalf("certs: exit %d: %s", code, errs)
	}
	for _, f := range []string{"ca.pem", "ca/intermediate.pem", "ca/intermediate-key.pem", "ca/root-key.pem",
		"worker/worker-1/cert.pem", "worker/worker-2/key.pem", "worker/w9/ca.pem", "coordinator/c1/cert.pem"} {
		if !strings.Contains(out, filepath.Join(dir, f)) {
			t.Errorf("stdout does not list %s", f)
		}
		fi, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasSuffix(f, "key.pem") && fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", f, fi.Mode().Perm())
		}
	}
	src, err := pki.NewSource(pki.DirFiles(filepath.Join(dir, "worker", "w9")))
	if err != nil {
		t.Fatal(err)
	}
	if id := src.Identity(); id != pki.Worker("r1", "w9") {
		t.Fatalf("worker/w9 holds %+v", id)
	}

	code, _, errs = runCLI("certs", "--out", dir, "--run", "r1", "--workers", "1")
	want := filepath.Join(dir, "worker", "worker-1", "cert.pem") + " exists; pass --force"
	if code != 2 || !strings.Contains(errs, want) || strings.Count(errs, "\n") != 1 {
		t.Fatalf("over existing files: exit %d, stderr %q; want 2 and one line with %q", code, errs, want)
	}
	before, _ := os.ReadFile(filepath.Join(dir, "worker", "worker-1", "cert.pem"))
	ca, _ := os.ReadFile(filepath.Join(dir, "ca.pem"))
	if code, _, errs = runCLI("certs", "--out", dir, "--run", "r1", "--workers", "1", "--force"); code != 0 {
		t.Fatalf("--force: exit %d: %s", code, errs)
	}
	after, _ := os.ReadFile(filepath.Join(dir, "worker", "worker-1", "cert.pem"))
	ca2, _ := os.ReadFile(filepath.Join(dir, "ca.pem"))
	if string(before) == string(after) || string(ca) != string(ca2) {
		t.Fatal("--force should re-issue the leaf under the same CA")
	}
	// The re-issued leaf and an untouched one still trust each other.
	for _, id := range []string{"worker-1", "worker-2"} {
		f := pki.DirFiles(filepath.Join(dir, "worker", id))
		if _, err := tls.LoadX509KeyPair(f.Cert, f.Key); err != nil {
			t.Fatal(err)
		}
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"certs"}, "--out is required"},
		{[]string{"certs", "--out", dir, "--run", "r2", "--workers", "1"}, `CA of run "r1"`},
		{[]string{"certs", "--out", t.TempDir(), "--worker-ids", "a/b"}, `--worker-ids: "a/b"`},
	} {
		if code, _, errs := runCLI(tc.args...); code != 2 || !strings.Contains(errs, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want 2 and %q", tc.args, code, errs, tc.want)
		}
	}
}
