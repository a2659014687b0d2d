package cluster

import (
	"context"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
)

func TestMain(m *testing.M) {
	// No ignores needed: every etcd server, etcd client and memberlist the
	// tests start is closed, and goleak's retries cover their goroutines'
	// last moments after Close returns.
	goleak.VerifyTestMain(m)
}

// startEtcd runs an embedded etcd on 127.0.0.1 port 0 for the test.
func startEtcd(t *testing.T) *Etcd {
	t.Helper()
	e, err := StartEtcd(EtcdConfig{Dir: t.TempDir(), ListenClientURLs: "http://127.0.0.1:0", ListenPeerURLs: "http://127.0.0.1:0", Fast: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	return e
}

// newEtcdClient is an etcd client closed at the end of the test.
func newEtcdClient(t *testing.T, endpoints []string) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(EtcdClientConfig(endpoints, nil))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

func newTestClient(t *testing.T, e *Etcd, run string) *Client {
	t.Helper()
	return NewClient(newEtcdClient(t, e.Endpoints()), run, zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)))
}

func testCtx(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
