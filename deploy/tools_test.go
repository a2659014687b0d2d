package deploy_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// How to install the tools these tests run. `make test` builds bin/etcd;
// kustomize is pinned in tools/go.mod and run with `go tool`; Docker and
// Compose must already be on the machine.
const (
	installCompose = "apt-get install -y docker-compose (or Docker's docker-compose-plugin, for `docker compose`)"
	installDocker  = "apt-get install -y docker.io docker-compose, then start the engine (service docker start)"
	installEtcdBin = "make etcd-binary"
)

// missingTool ends a test that needs a tool this machine lacks: what says
// which tool and why it cannot run, install the command that installs it.
// The test is skipped, except in CI, where it fails (failInCI).
func missingTool(t testing.TB, what, install string) {
	t.Helper()
	failInCI(t, what, install)
	t.Skipf("%s (install with: %s)", what, install)
}

// failInCI fails the test when $CI is set: CI's machine is meant to have
// every tool the tests need, so a missing one must not turn part of the
// suite into silent skips. Elsewhere it returns.
func failInCI(t testing.TB, what, install string) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("%s; CI ($CI is set) must have it, install with: %s", what, install)
	}
}

// goCommand is the go command of the toolchain running the tests (it runs
// the tools pinned in tools/go.mod).
func goCommand(t testing.TB) string {
	t.Helper()
	p := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(p); err == nil {
		return p
	}
	p, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to run kustomize (go tool -modfile=../tools/go.mod kustomize): %v", err)
	}
	return p
}
