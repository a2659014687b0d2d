package cluster

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// A dead endpoint is named, with why, every period; a live one is not.
func TestWatchReachabilityNamesDeadEndpoints(t *testing.T) {
	e := startEtcd(t)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := lis.Addr().String()
	lis.Close() // nothing listens there now
	live := e.Endpoints()[0]
	cli, err := clientv3.New(EtcdClientConfig([]string{live, dead}, zap.NewNop()))
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	core, logs := observer.New(zap.WarnLevel)
	// A period long enough that the live endpoint answers within half of
	// it on a loaded machine.
	stop := WatchReachability(context.Background(), cli, []string{live, dead}, 400*time.Millisecond, zap.New(core))
	deadline := time.Now().Add(15 * time.Second)
	for logs.FilterField(zap.String("endpoint", dead)).Len() < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	stop()
	if n := logs.FilterField(zap.String("endpoint", dead)).Len(); n < 2 {
		t.Fatalf("%d warnings about %s, want one per period", n, dead)
	}
	if n := logs.FilterField(zap.String("endpoint", live)).Len(); n != 0 {
		t.Fatalf("%d warnings about the live endpoint %s", n, live)
	}
	for _, l := range logs.All() {
		if !strings.Contains(l.ContextMap()["error"].(string), "refused") {
			t.Fatalf("warning %v does not say why (connection refused)", l.ContextMap())
		}
	}
}
