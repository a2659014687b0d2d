package coordinator

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/ringtrain/ringtrain/cluster"
	"github.com/ringtrain/ringtrain/internal/pki"
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

// TestStockEtcdServer runs a coordinator and a worker against the official
// etcd server binary in a subprocess, as compose and Kubernetes run it:
// mutual TLS 1.3 with the run's certificates, --client-cert-auth and auth
// on, users provisioned from the certificates' names. The coordinator forms
// a generation and publishes the worker's checkpoint; the worker's
// certificate registers but cannot write the generation.
func TestStockEtcdServer(t *testing.T) {
	if _, err := os.Stat(stockEtcd); err != nil {
		missingTool(t, "the stock etcd server: "+err.Error(), "make etcd-binary")
	}
	const run = "stock"
	certs := t.TempDir()
	ca, err := pki.NewAuthority(run, time.Now(), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	server := pki.Identity{Run: run, Role: pki.RoleEtcdServer, ID: "stock"}
	files := ca.CAFiles(certs)
	for _, x := range []struct {
		ids []pki.Identity
		opt pki.IssueOptions
	}{
		{[]pki.Identity{server}, pki.IssueOptions{IPs: []net.IP{net.IPv4(127, 0, 0, 1)}}},
		{[]pki.Identity{pki.Coordinator(run, "c1"), pki.Worker(run, "w1")}, pki.IssueOptions{}},
	} {
		leaves, err := ca.LeafFiles(certs, x.ids, x.opt)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, leaves...)
	}
	if err := pki.WriteFiles(files, false); err != nil {
		t.Fatal(err)
	}
	sf := pki.DirFiles(pki.LeafDir(certs, server))

	client := fmt.Sprintf("https://127.0.0.1:%d", freePort(t))
	peer := fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, stockEtcd,
		"--name", "stock", "--data-dir", t.TempDir(),
		"--listen-client-urls", client, "--advertise-client-urls", client,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
		"--initial-cluster", "stock="+peer, "--heartbeat-interval", "10", "--election-timeout", "100",
		"--cert-file", sf.Cert, "--key-file", sf.Key, "--trusted-ca-file", sf.CA, "--client-cert-auth", "--tls-min-version", "TLS1.3")
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

	endpoints := []string{client}
	as := func(id pki.Identity) *cluster.Client {
		src, err := pki.NewSource(pki.DirFiles(pki.LeafDir(certs, id)))
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := cluster.SecureEtcd(cluster.EtcdClientConfig(endpoints, nil), src, "--tls-dir")
		if err != nil {
			t.Fatal(err)
		}
		cli, err := clientv3.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cli.Close() })
		return cluster.NewClient(cli, run, nil)
	}
	admin := as(pki.Coordinator(run, "c1"))
	waitFor(t, 20*time.Second, "stock etcd serves", func() bool {
		rctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		_, _, err := admin.Generation(rctx)
		return err == nil
	})
	pctx, pcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer pcancel()
	for _, err := range []error{
		cluster.EnsureCoordinatorUser(pctx, admin.Etcd(), "c1"),
		cluster.EnsureWorkerUser(pctx, admin.Etcd(), run, "w1"),
		cluster.EnableAuth(pctx, admin.Etcd()),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}

	w1 := as(pki.Worker(run, "w1"))
	gens := watchGens(t, w1)
	cfg := TestConfig(endpoints, run, "c1")
	cfg.TLS = pki.DirFiles(pki.LeafDir(certs, pki.Coordinator(run, "c1")))
	c, _ := runCoordinator(t, cfg)
	waitFor(t, 10*time.Second, "c1 leads", c.IsLeader)
	register(t, w1, "w1", 5*time.Second)
	g := gens.until(10*time.Second, "w1")
	if g.Leader != "c1" || g.Members[0].ID != "w1" {
		t.Fatalf("generation %s by %q, members %+v", g, g.Leader, g.Members)
	}
	if _, err := w1.Etcd().Put(pctx, w1.Key(cluster.KeyGeneration), cluster.Marshal(cluster.Generation{Gen: 99})); !errors.Is(err, rpctypes.ErrPermissionDenied) {
		t.Fatalf("the worker's certificate wrote the generation on stock etcd: %v", err)
	}
	if err := w1.ReportCheckpoint(pctx, "w1", cluster.CheckpointRef{Step: 10, Dir: "step-00000010"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the coordinator publishes w1's checkpoint", func() bool {
		ref, ok, _ := w1.LatestCheckpoint(pctx)
		return ok && ref.Step == 10
	})
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
