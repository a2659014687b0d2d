package coordinator

import (
	"context"
	"os"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/ringtrain/ringtrain/cluster"
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

// startEtcd runs an embedded etcd on 127.0.0.1 port 0 for the test.
func startEtcd(t *testing.T) *cluster.Etcd {
	t.Helper()
	e, err := cluster.StartEtcd(cluster.EtcdConfig{Dir: t.TempDir(), ListenClientURLs: "http://127.0.0.1:0", ListenPeerURLs: "http://127.0.0.1:0", Fast: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	return e
}

// newEtcdClient is an etcd client closed at the end of the test.
func newEtcdClient(t *testing.T, endpoints []string) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(cluster.EtcdClientConfig(endpoints, nil))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

func newTestClient(t *testing.T, e *cluster.Etcd, run string) *cluster.Client {
	t.Helper()
	return cluster.NewClient(newEtcdClient(t, e.Endpoints()), run, zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)))
}

func testCtx(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// put writes v (as JSON) at name in c's run, as the run's writers would.
func put(ctx context.Context, c *cluster.Client, name string, v any) error {
	_, err := c.Etcd().Put(ctx, c.Key(name), cluster.Marshal(v))
	return err
}

func testSpec(min, max int) cluster.RunSpec {
	return cluster.RunSpec{Config: train.DefaultConfig().Spec, MinWorkers: min, MaxWorkers: max, HashEvery: 100}
}
