package coordinator

import (
	"errors"
	"net"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap/zaptest"

	"github.com/ringtrain/ringtrain/cluster"
	"github.com/ringtrain/ringtrain/enroll"
	"github.com/ringtrain/ringtrain/internal/pki"
)

// A coordinator holding the run's intermediate provisions a TLS etcd that
// nobody provisioned, as compose and Kubernetes start it: auth on, its own
// user and the --etcd-clients' readers added; a second coordinator with a
// new ID (a pod name) gets in once auth is on; a worker it enrolls gets an
// etcd user that writes its own keys and not the generation; a certificate
// whose user nobody added reads nothing.
func TestProvisionsEtcd(t *testing.T) {
	const run = "provision"
	cfg, _ := tlsConfig(t, []string{"placeholder"}, run, "c1")
	cfg.TLS = pki.Files{} // self-issued, as on Kubernetes
	cfg.EtcdClients = []string{"ops"}
	ca, err := pki.LoadAuthorityDir(cfg.CADir)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	server := pki.Identity{Run: run, Role: pki.RoleEtcdServer, ID: "e1"}
	ids := []pki.Identity{{Run: run, Role: pki.RoleClient, ID: "ops"}, {Run: run, Role: pki.RoleClient, ID: "stranger"}}
	files, err := ca.LeafFiles(dir, []pki.Identity{server}, pki.IssueOptions{IPs: []net.IP{net.IPv4(127, 0, 0, 1)}})
	if err != nil {
		t.Fatal(err)
	}
	more, err := ca.LeafFiles(dir, ids, pki.IssueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := pki.WriteFiles(append(files, more...), false); err != nil {
		t.Fatal(err)
	}
	e, err := cluster.StartEtcd(cluster.EtcdConfig{Dir: t.TempDir(), ListenClientURLs: "https://127.0.0.1:0", ListenPeerURLs: "http://127.0.0.1:0", Fast: true,
		TLS: pki.DirFiles(pki.LeafDir(dir, server))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	as := func(files pki.Files) *cluster.Client {
		t.Helper()
		src, err := pki.NewSource(files)
		if err != nil {
			t.Fatal(err)
		}
		ecfg, err := cluster.SecureEtcd(cluster.EtcdClientConfig(e.Endpoints(), nil), src, "--tls-dir")
		if err != nil {
			t.Fatal(err)
		}
		cli, err := clientv3.New(ecfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cli.Close() })
		return cluster.NewClient(cli, run, nil)
	}
	ctx := testCtx(t, 30*time.Second)

	cfg.Etcd = e.Endpoints()
	c1, _ := runCoordinator(t, cfg)
	waitFor(t, 10*time.Second, "c1 leads", c1.IsLeader)
	ops := as(pki.DirFiles(pki.LeafDir(dir, ids[0])))
	if auth, err := ops.Etcd().AuthStatus(ctx); err != nil || !auth.Enabled {
		t.Fatalf("etcd's auth after c1 started: %+v, %v; want enabled", auth, err)
	}
	if _, err := ops.Spec(ctx); err != nil {
		t.Fatalf("--etcd-clients ops reads the spec: %v", err)
	}
	if _, err := ops.Etcd().Put(ctx, ops.Key(cluster.KeyGeneration), "{}"); !errors.Is(err, rpctypes.ErrPermissionDenied) {
		t.Fatalf("ops wrote the generation: %v, want permission denied", err)
	}
	stranger := as(pki.DirFiles(pki.LeafDir(dir, ids[1])))
	if _, err := stranger.Etcd().Get(ctx, stranger.Key(cluster.KeySpec)); err == nil {
		t.Fatal("a client nobody provisioned read the run")
	}

	// A coordinator that was never provisioned gets in through the admin
	// certificate, with auth already on.
	cfg2 := cfg
	cfg2.ID = "c2"
	runCoordinator(t, cfg2)
	waitFor(t, 10*time.Second, "c2 registers", func() bool {
		cs, _ := ops.Coordinators(ctx)
		return slices.ContainsFunc(cs, func(c cluster.CoordinatorInfo) bool { return c.ID == "c2" })
	})

	// A worker enrolled by the leader is in etcd at once, with its own keys only.
	w := enroll.NewClient(enroll.ClientConfig{Run: run, ID: "w1", CA: ca.RootPEM(), Token: enrollToken,
		Locate: enroll.LeaderLocator(ops), Dir: filepath.Join(t.TempDir(), "tls"), Logger: zaptest.NewLogger(t)})
	if err := w.Enroll(ctx); err != nil {
		t.Fatal(err)
	}
	w1 := as(w.Files())
	register(t, w1, "w1", 5*time.Second)
	if _, err := w1.Etcd().Put(ctx, w1.Key(cluster.KeyGeneration), cluster.Marshal(cluster.Generation{Gen: 99})); !errors.Is(err, rpctypes.ErrPermissionDenied) {
		t.Fatalf("the enrolled worker's certificate wrote the generation: %v, want permission denied", err)
	}
}
