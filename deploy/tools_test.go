package deploy_test

import (
	"os"
	"testing"
)

// How to install the tools these tests run. In CI, `make test` builds
// bin/etcd and .ci/run installs kustomize when kubectl is missing; Docker
// and Compose must already be on the machine (.ci/run does not install them).
const (
	installCompose   = "apt-get install -y docker-compose (or Docker's docker-compose-plugin, for `docker compose`)"
	installDocker    = "apt-get install -y docker.io docker-compose, then start the engine (service docker start)"
	installKustomize = "GOBIN=/usr/local/bin go install sigs.k8s.io/kustomize/kustomize/v5@v5.8.1 (or install kubectl)"
	installEtcdBin   = "make etcd-binary"
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
