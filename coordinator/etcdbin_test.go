package coordinator

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/cluster"
)

// stockEtcd is the official etcd server, built from its own module by
// `make etcd-binary` (deploy/etcd-build), as the images ship it.
const stockEtcd = "../bin/etcd"

// freePort is a free TCP port on 127.0.0.1 (free at the time of asking).
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestStockEtcdServer runs a coordinator and a worker registration against
// the official etcd server binary in a subprocess.
func TestStockEtcdServer(t *testing.T) {
	if _, err := os.Stat(stockEtcd); err != nil {
		missingTool(t, "the stock etcd server: "+err.Error(), "make etcd-binary")
	}
	client := fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
	peer := fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, stockEtcd,
		"--name", "stock", "--data-dir", t.TempDir(),
		"--listen-client-urls", client, "--advertise-client-urls", client,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
		"--initial-cluster", "stock="+peer, "--heartbeat-interval", "10", "--election-timeout", "100")
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { // after the coordinator's and clients' cleanups
		cancel()
		cmd.Wait() //nolint:errcheck // killed
		if t.Failed() {
			t.Logf("etcd output:\n%s", out.String())
		}
	})

	endpoints := []string{client[len("http://"):]}
	cl := cluster.NewClient(newEtcdClient(t, endpoints), "stock", nil)
	waitFor(t, 20*time.Second, "stock etcd serves", func() bool {
		rctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		_, _, err := cl.Generation(rctx)
		return err == nil
	})
	gens := watchGens(t, cl)
	c, _ := runCoordinator(t, TestConfig(endpoints, "stock", "c1"))
	waitFor(t, 10*time.Second, "c1 leads", c.IsLeader)
	register(t, cl, "w1", 5*time.Second)
	g := gens.until(10*time.Second, "w1")
	if g.Leader != "c1" || g.Members[0].Addr != "127.0.0.1:w1" {
		t.Fatalf("generation %s by %q, members %+v", g, g.Leader, g.Members)
	}
	if won, err := cl.PublishCheckpoint(context.Background(), cluster.CheckpointRef{Step: 10}); !won || err != nil {
		t.Fatalf("checkpoint CAS on stock etcd: %v %v", won, err)
	}
}

// syncBuffer is a bytes.Buffer safe for a subprocess's two pipes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
