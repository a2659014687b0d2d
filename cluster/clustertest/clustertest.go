// Package clustertest starts a real, embedded etcd for the tests of the
// packages above cluster (coordinator, worker) and hands them clients that
// the test's cleanup closes.
package clustertest

import (
	"context"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/ringtrain/ringtrain/cluster"
)

// Etcd runs an embedded etcd on 127.0.0.1 port 0 for the test.
func Etcd(t *testing.T) *cluster.Etcd {
	t.Helper()
	e, err := cluster.StartEtcd(cluster.EtcdConfig{Dir: t.TempDir(), ListenClientURLs: "http://127.0.0.1:0", ListenPeerURLs: "http://127.0.0.1:0", Fast: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	return e
}

// EtcdClient is an etcd client closed at the end of the test.
func EtcdClient(t *testing.T, endpoints []string) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(cluster.EtcdClientConfig(endpoints, nil))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// Client is run's client on e, logging warnings to the test.
func Client(t *testing.T, e *cluster.Etcd, run string) *cluster.Client {
	t.Helper()
	return cluster.NewClient(EtcdClient(t, e.Endpoints()), run, zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)))
}

// Ctx is a context that ends after d or with the test.
func Ctx(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
