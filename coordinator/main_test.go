package coordinator

import (
	"context"
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/ringtrain/ringtrain/cluster"
	"github.com/ringtrain/ringtrain/cluster/clustertest"
	"github.com/ringtrain/ringtrain/train"
)

func TestMain(m *testing.M) {
	// No ignores needed: every etcd server, etcd client, memberlist and
	// gRPC server the tests start is closed, and goleak's retries cover
	// their goroutines' last moments after Close returns.
	goleak.VerifyTestMain(m)
}

// missingTool ends a test that needs a tool this machine lacks: what says
// which tool and why it cannot run, install the command that installs it.
// The test is skipped, except in CI ($CI set), whose machine is meant to
// have every tool the tests need: there it fails instead, so that a
// missing tool cannot turn part of the suite into silent skips.
func missingTool(t testing.TB, what, install string) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("%s; CI ($CI is set) must have it, install with: %s", what, install)
	}
	t.Skipf("%s (install with: %s)", what, install)
}

// The helpers below start a real (embedded) etcd for the coordinator's
// tests, as cluster's own tests do.

var (
	startEtcd     = clustertest.Etcd
	newEtcdClient = clustertest.EtcdClient
	newTestClient = clustertest.Client
	testCtx       = clustertest.Ctx
)

// put writes v (as JSON) at name in c's run, as the run's writers would.
func put(ctx context.Context, c *cluster.Client, name string, v any) error {
	_, err := c.Etcd().Put(ctx, c.Key(name), cluster.Marshal(v))
	return err
}

func testSpec(min, max int) cluster.RunSpec {
	return cluster.RunSpec{Config: train.DefaultConfig().Spec, MinWorkers: min, MaxWorkers: max, HashEvery: 100}
}
