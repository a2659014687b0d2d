package pki

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

const run = "test"

// newDir writes an authority and leaves for ids into a temporary directory.
func newDir(t *testing.T, ids ...Identity) (string, *Authority) {
	t.Helper()
	a, err := NewAuthority(run, time.Now(), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	leaves, err := a.LeafFiles(dir, ids, IssueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteFiles(append(a.CAFiles(dir), leaves...), false); err != nil {
		t.Fatal(err)
	}
	return dir, a
}

func source(t *testing.T, dir string, id Identity) *Source {
	t.Helper()
	s, err := NewSource(DirFiles(LeafDir(dir, id)))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// handshake runs one TLS 1.3 handshake over loopback and returns the
// identities each side saw of the other, and each side's error.
func handshake(t *testing.T, server, client *tls.Config) (seenByServer, seenByClient Identity, serr, cerr error) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := lis.Accept()
		if err != nil {
			serr = err
			return
		}
		defer c.Close()
		tc := tls.Server(c, server)
		tc.SetDeadline(time.Now().Add(5 * time.Second))
		if serr = tc.Handshake(); serr == nil {
			seenByServer, serr = ConnIdentity(tc.ConnectionState())
			// TLS 1.3 clients learn of a refused certificate on first read.
			tc.Write([]byte{1})
		}
	}()
	c, err := net.Dial("tcp", lis.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	tc := tls.Client(c, client)
	tc.SetDeadline(time.Now().Add(5 * time.Second))
	if cerr = tc.Handshake(); cerr == nil {
		seenByClient, cerr = ConnIdentity(tc.ConnectionState())
		if cerr == nil {
			_, cerr = io.ReadFull(tc, make([]byte, 1))
		}
	}
	tc.Close()
	<-done
	return
}

func TestIssueAndVerify(t *testing.T) {
	w1, c1 := Worker(run, "w1"), Coordinator(run, "c1")
	dir, _ := newDir(t, w1, c1)
	srv, cli := source(t, dir, w1), source(t, dir, c1)
	gotS, gotC, serr, cerr := handshake(t, srv.ServerConfig(), cli.ClientConfig())
	if serr != nil || cerr != nil {
		t.Fatalf("handshake: server %v, client %v", serr, cerr)
	}
	if gotS != c1 || gotC != w1 {
		t.Fatalf("server saw %+v (want %+v), client saw %+v (want %+v)", gotS, c1, gotC, w1)
	}
	if srv.Identity() != w1 {
		t.Fatalf("Identity() = %+v, want %+v", srv.Identity(), w1)
	}
	// The identity is in the common name and the URI SAN.
	pair, _ := tls.LoadX509KeyPair(DirFiles(LeafDir(dir, w1)).Cert, DirFiles(LeafDir(dir, w1)).Key)
	if cn, uri := pair.Leaf.Subject.CommonName, pair.Leaf.URIs[0].String(); cn != "worker:w1" || uri != "spiffe://ringtrain/test/worker/w1" {
		t.Fatalf("CN %q, URI %q", cn, uri)
	}
	if life := pair.Leaf.NotAfter.Sub(pair.Leaf.NotBefore); life > DefaultLeafTTL+backdate {
		t.Fatalf("leaf lives %v, want at most %v", life, DefaultLeafTTL+backdate)
	}
}

func TestExpectServer(t *testing.T) {
	w1, w2 := Worker(run, "w1"), Worker(run, "w2")
	dir, _ := newDir(t, w1, w2)
	srv, cli := source(t, dir, w1), source(t, dir, w2)
	if _, _, serr, cerr := handshake(t, srv.ServerConfig(), ExpectServer(cli.ClientConfig(), w1)); serr != nil || cerr != nil {
		t.Fatalf("expecting the right server: server %v, client %v", serr, cerr)
	}
	_, _, _, cerr := handshake(t, srv.ServerConfig(), ExpectServer(cli.ClientConfig(), w2))
	if cerr == nil || !strings.Contains(cerr.Error(), "server is worker:w1, want worker:w2") {
		t.Fatalf("client error %v, want one naming both identities", cerr)
	}
}

func TestWrongCARefused(t *testing.T) {
	w1 := Worker(run, "w1")
	dir, _ := newDir(t, w1)
	other, _ := newDir(t, w1) // the same identity from another CA
	srv, rogue := source(t, dir, w1), source(t, other, w1)

	// A client of another CA that trusts any server still is refused.
	trusting := rogue.ClientConfig()
	trusting.VerifyPeerCertificate = nil
	_, _, serr, cerr := handshake(t, srv.ServerConfig(), trusting)
	if serr == nil || cerr == nil {
		t.Fatalf("client of another CA: server %v, client %v; want both to fail", serr, cerr)
	}
	if !strings.Contains(serr.Error(), "certificate signed by unknown authority") {
		t.Fatalf("server error %v, want an unknown authority", serr)
	}
	_, _, _, cerr = handshake(t, rogue.ServerConfig(), srv.ClientConfig())
	if cerr == nil || !strings.Contains(cerr.Error(), "unknown authority") {
		t.Fatalf("server of another CA: client error %v, want an unknown authority", cerr)
	}
	// No certificate at all.
	_, _, serr, _ = handshake(t, srv.ServerConfig(), &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13})
	if serr == nil || !strings.Contains(serr.Error(), "didn't provide a certificate") {
		t.Fatalf("client without a certificate: server error %v", serr)
	}
}

func TestExpiredRefused(t *testing.T) {
	w1, w2 := Worker(run, "w1"), Worker(run, "w2")
	dir, a := newDir(t, w1)
	old, err := a.LeafFiles(dir, []Identity{w2}, IssueOptions{Now: time.Now().Add(-48 * time.Hour), TTL: 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteFiles(old, false); err != nil {
		t.Fatal(err)
	}
	srv, expired := source(t, dir, w1), source(t, dir, w2)
	_, _, serr, _ := handshake(t, srv.ServerConfig(), expired.ClientConfig())
	if serr == nil || !strings.Contains(serr.Error(), "expired") {
		t.Fatalf("expired client: server error %v, want expired", serr)
	}
	_, _, _, cerr := handshake(t, expired.ServerConfig(), srv.ClientConfig())
	if cerr == nil || !strings.Contains(cerr.Error(), "expired") {
		t.Fatalf("expired server: client error %v, want expired", cerr)
	}
}

func TestPeerIdentityOverGRPC(t *testing.T) {
	w1, c1, cl := Worker(run, "w1"), Coordinator(run, "c1"), Identity{Run: run, Role: RoleClient, ID: "ops"}
	dir, _ := newDir(t, w1, c1, cl)
	srv := source(t, dir, w1)
	seen := make(chan Identity, 1)
	s := grpc.NewServer(grpc.Creds(credentials.NewTLS(srv.ServerConfig())),
		grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			id, err := PeerIdentity(ctx)
			if err != nil {
				return nil, err
			}
			seen <- id
			return h(ctx, req)
		}))
	healthpb.RegisterHealthServer(s, health.NewServer())
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(lis)
	defer s.Stop()
	for _, id := range []Identity{c1, cl} {
		conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(credentials.NewTLS(source(t, dir, id).ClientConfig())))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err = healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
		cancel()
		conn.Close()
		if err != nil {
			t.Fatalf("%s: %v", id, err)
		}
		if got := <-seen; got != id {
			t.Fatalf("PeerIdentity = %+v, want %+v", got, id)
		}
	}
	if _, err := PeerIdentity(context.Background()); !errors.Is(err, ErrNoPeerCertificate) {
		t.Fatalf("PeerIdentity without a peer: %v", err)
	}
}

func TestReloadAfterRewrite(t *testing.T) {
	w1, w2 := Worker(run, "w1"), Worker(run, "w2")
	dir, a := newDir(t, w1, w2)
	srv, cli := source(t, dir, w1), source(t, dir, w2)
	srvCfg, cliCfg := srv.ServerConfig(), cli.ClientConfig() // built once, as a process does

	// Rotate the server's leaf: a new key pair for the same identity.
	before, _ := os.ReadFile(DirFiles(LeafDir(dir, w1)).Cert)
	rotated, err := a.LeafFiles(dir, []Identity{w1}, IssueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteFiles(rotated, true); err != nil {
		t.Fatal(err)
	}
	bumpTimes(t, LeafDir(dir, w1))
	var served []byte
	probe := srvCfg.Clone()
	probe.GetConfigForClient = func(h *tls.ClientHelloInfo) (*tls.Config, error) {
		c, err := srvCfg.GetConfigForClient(h)
		if err == nil {
			served = certPEM(c.Certificates[0].Leaf)
		}
		return c, err
	}
	if _, _, serr, cerr := handshake(t, probe, cliCfg); serr != nil || cerr != nil {
		t.Fatalf("after rotation: server %v, client %v", serr, cerr)
	}
	if string(served) == string(before[:len(served)]) {
		t.Fatal("the server still presents the certificate from before the rewrite")
	}

	// Rotate the CA: the client trusts a new root only, so the server's
	// (old-CA) certificate is refused without restarting anything.
	b, err := NewAuthority(run, time.Now(), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(DirFiles(LeafDir(dir, w2)).CA, b.RootPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	bumpTimes(t, LeafDir(dir, w2))
	if _, _, _, cerr := handshake(t, srvCfg, cliCfg); cerr == nil || !strings.Contains(cerr.Error(), "unknown authority") {
		t.Fatalf("after the client's CA changed: client error %v, want unknown authority", cerr)
	}

	// A half-written rotation (a key that does not match) keeps the pair in use.
	if err := os.WriteFile(DirFiles(LeafDir(dir, w1)).Key, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	bumpTimes(t, LeafDir(dir, w1))
	if _, _, err := srv.current(); err != nil || srv.Identity() != w1 {
		t.Fatalf("half-written rotation: %v, identity %+v", err, srv.Identity())
	}
}

// bumpTimes moves the files' modification times forward, so a rewrite is
// seen even on a file system with coarse timestamps.
func bumpTimes(t *testing.T, dir string) {
	t.Helper()
	ts := time.Now().Add(time.Minute)
	for _, f := range []string{CertFile, KeyFile, RootFile} {
		if err := os.Chtimes(filepath.Join(dir, f), ts, ts); err != nil {
			t.Fatal(err)
		}
	}
}

func TestWriteFilesRefusesOverwrite(t *testing.T) {
	dir, a := newDir(t, Worker(run, "w1"))
	err := WriteFiles(a.CAFiles(dir), false)
	var ex *ExistsError
	if !errors.As(err, &ex) || ex.Path != filepath.Join(dir, RootFile) {
		t.Fatalf("WriteFiles over existing files: %v", err)
	}
	for _, f := range []string{IntermediateKeyFile, RootKeyFile, "worker/w1/key.pem"} {
		fi, err := os.Stat(filepath.Join(dir, f))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v, mode %v; want 0600", f, err, fi.Mode())
		}
	}
	loaded, err := LoadAuthorityDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if loaded.Run != run || !loaded.Root.Equal(a.Root) {
		t.Fatalf("loaded authority of run %q", loaded.Run)
	}
	// A loaded authority issues leaves its peers accept.
	leaves, err := loaded.LeafFiles(dir, []Identity{Worker(run, "w9")}, IssueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteFiles(leaves, false); err != nil {
		t.Fatal(err)
	}
	if _, _, serr, cerr := handshake(t, source(t, dir, Worker(run, "w1")).ServerConfig(), source(t, dir, Worker(run, "w9")).ClientConfig()); serr != nil || cerr != nil {
		t.Fatalf("leaf of the loaded authority: server %v, client %v", serr, cerr)
	}
}

func TestEtcdServerLeafHasHosts(t *testing.T) {
	a, err := NewAuthority(run, time.Now(), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	kp, err := a.Issue(Identity{Run: run, Role: RoleEtcdServer, ID: "etcd-0"},
		IssueOptions{DNSNames: []string{"etcd-0.etcd"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}})
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(kp.Cert, kp.Key)
	if err != nil {
		t.Fatal(err)
	}
	if err := pair.Leaf.VerifyHostname("etcd-0.etcd"); err != nil {
		t.Fatal(err)
	}
	if err := pair.Leaf.VerifyHostname("127.0.0.1"); err != nil {
		t.Fatal(err)
	}
}

func TestIdentityValidate(t *testing.T) {
	for _, tc := range []struct {
		id Identity
		ok bool
	}{
		{Worker("r", "w-1.x"), true},
		{Worker("r", ""), false},
		{Worker("r", "a/b"), false},
		{Worker("r", "a:b"), false},
		{Worker("", "w"), false},
		{Identity{Run: "r", Role: "admin", ID: "x"}, false},
	} {
		if err := tc.id.Validate(); (err == nil) != tc.ok {
			t.Errorf("%+v: Validate() = %v, want ok=%v", tc.id, err, tc.ok)
		}
		if tc.ok {
			if got, ok := parseURI(tc.id.URI()); !ok || got != tc.id {
				t.Errorf("%+v: URI round trip gave %+v, %v", tc.id, got, ok)
			}
		}
	}
}
