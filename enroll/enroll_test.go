package enroll

import (
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap/zaptest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/ringtrain/ringtrain/internal/pki"
	ringtrainpb "github.com/ringtrain/ringtrain/proto"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	run   = "enr"
	token = "0123456789abcdef0123456789abcdef"
	ttl   = 10 * time.Minute
)

// fixture is a coordinator serving Enrollment over real gRPC and TLS on
// loopback, with a live set the test controls.
type fixture struct {
	auth    *pki.Authority
	dir     string // the coordinator's certificates directory
	addr    string
	leading atomic.Bool
	mu      sync.Mutex
	live    map[string]bool
	// provisioned are the IDs Provision was called with; provisionErr
	// is what it returns.
	provisioned  []string
	provisionErr error
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	auth, err := pki.NewAuthority(run, time.Now(), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{auth: auth, dir: t.TempDir(), live: map[string]bool{}}
	leaves, err := auth.LeafFiles(f.dir, []pki.Identity{pki.Coordinator(run, "c1")}, pki.IssueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := pki.WriteFiles(append(auth.CAFiles(f.dir), leaves...), false); err != nil {
		t.Fatal(err)
	}
	src, err := pki.NewSource(pki.DirFiles(pki.LeafDir(f.dir, pki.Coordinator(run, "c1"))))
	if err != nil {
		t.Fatal(err)
	}
	// What the coordinator loads: the intermediate, without the root key.
	issuer, err := pki.LoadAuthorityDir(f.dir)
	if err != nil {
		t.Fatal(err)
	}
	f.leading.Store(true)
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(src.OptionalClientServerConfig())))
	ringtrainpb.RegisterEnrollmentServer(srv, NewServer(ServerConfig{
		Authority: issuer, Run: run, Token: token, TTL: ttl, Leading: f.leading.Load,
		Live: func(_ context.Context, id string) (bool, error) {
			f.mu.Lock()
			defer f.mu.Unlock()
			return f.live[id], nil
		},
		Provision: func(_ context.Context, id string) error {
			f.mu.Lock()
			defer f.mu.Unlock()
			if f.provisionErr != nil {
				return f.provisionErr
			}
			f.provisioned = append(f.provisioned, id)
			return nil
		},
		Logger: zaptest.NewLogger(t),
	}))
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.addr = lis.Addr().String()
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(lis) }()
	t.Cleanup(func() { srv.Stop(); <-done })
	return f
}

func (f *fixture) setLive(id string, b bool) {
	f.mu.Lock()
	f.live[id] = b
	f.mu.Unlock()
}

func (f *fixture) client(t *testing.T, id, tok string) *Client {
	t.Helper()
	ca, err := os.ReadFile(f.dir + "/" + pki.RootFile)
	if err != nil {
		t.Fatal(err)
	}
	return NewClient(ClientConfig{Run: run, ID: id, CA: ca, Token: tok, Dir: t.TempDir() + "/tls",
		Locate: func(context.Context) (string, string, error) { return f.addr, "c1", nil },
		Logger: zaptest.NewLogger(t)})
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func leafOf(t *testing.T, c *Client) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(c.Files().Cert)
	if err != nil {
		t.Fatal(err)
	}
	l, err := pki.ParseLeaf(b)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestEnrollAndRenew(t *testing.T) {
	f := newFixture(t)
	c := f.client(t, "w1", token)
	before := time.Now()
	if err := c.Enroll(ctxT(t, 20*time.Second)); err != nil {
		t.Fatal(err)
	}
	// The files form a working identity: worker:w1, chaining to the root,
	// no longer-lived than the configured TTL, the key private.
	src, err := pki.NewSource(c.Files())
	if err != nil {
		t.Fatal(err)
	}
	if got := src.Identity(); got != pki.Worker(run, "w1") {
		t.Fatalf("identity %+v, want worker:w1 of %s", got, run)
	}
	leaf := leafOf(t, c)
	if life := leaf.NotAfter.Sub(before); life > ttl {
		t.Errorf("valid until %v after enrollment, want at most %v", life, ttl)
	}
	if fi, err := os.Stat(c.Files().Key); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v (%v), want 0600", fi.Mode().Perm(), err)
	}

	// Registered now: a second enrollment as w1, even with the token, is
	// refused; the holder renews with its certificate and no token.
	f.setLive("w1", true)
	if err := c.Renew(ctxT(t, 10*time.Second), src); err != nil {
		t.Fatalf("renew: %v", err)
	}
	renewed := leafOf(t, c)
	if renewed.SerialNumber.Cmp(leaf.SerialNumber) == 0 || renewed.PublicKey.(*ecdsa.PublicKey).Equal(leaf.PublicKey) {
		t.Fatal("the renewal did not replace the certificate and key")
	}
	if id, _ := pki.IdentityOf(renewed); id != pki.Worker(run, "w1") {
		t.Fatalf("renewed identity %+v", id)
	}
	// The source serves the renewed pair at the next handshake, and it
	// renews again.
	if err := c.Renew(ctxT(t, 10*time.Second), src); err != nil {
		t.Fatalf("second renewal with the renewed certificate: %v", err)
	}

	// w1's certificate cannot renew another worker's identity.
	other := f.client(t, "w2", "")
	err = other.Renew(ctxT(t, 10*time.Second), src)
	if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "cannot renew worker:w2") {
		t.Fatalf("w1 renewing w2: %v, want PermissionDenied", err)
	}
}

func TestEnrollRefusals(t *testing.T) {
	f := newFixture(t)
	for _, tc := range []struct {
		name, id, tok string
		code          codes.Code
		says          string
	}{
		{"bad token", "w1", "not-the-token-not-the-token", codes.PermissionDenied, "bad bootstrap token"},
		{"no token, no certificate", "w1", "", codes.PermissionDenied, "needs the run's bootstrap token"},
		{"invalid ID", "../etc", token, codes.InvalidArgument, "invalid worker ID"},
		{"ID with a colon", "worker:w1", token, codes.InvalidArgument, "invalid worker ID"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The server refuses the request as it comes over the wire...
			err := rawEnroll(t, f, tc.id, tc.tok)
			if status.Code(err) != tc.code || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("server: %v, want %v saying %q", err, tc.code, tc.says)
			}
			// ...and the client gives up at once, writing nothing.
			c := f.client(t, tc.id, tc.tok)
			start := time.Now()
			if err := c.Enroll(ctxT(t, 10*time.Second)); err == nil || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("client: %v, want one saying %q", err, tc.says)
			}
			if time.Since(start) > 5*time.Second {
				t.Errorf("a refusal that cannot pass was retried")
			}
			if _, serr := os.Stat(c.Files().Cert); serr == nil {
				t.Fatal("a refused enrollment wrote a certificate")
			}
		})
	}
}

// rawEnroll sends one request for id, whatever it is, with a valid CSR.
func rawEnroll(t *testing.T, f *fixture, id, tok string) error {
	t.Helper()
	csr, _, err := pki.NewCSR(pki.Worker(run, "any"))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(f.addr, grpc.WithTransportCredentials(credentials.NewTLS(mustTrust(t, f))))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, err = ringtrainpb.NewEnrollmentClient(conn).Enroll(ctxT(t, 10*time.Second),
		&ringtrainpb.EnrollRequest{Run: run, WorkerId: id, Csr: csr, Token: tok})
	return err
}

func mustTrust(t *testing.T, f *fixture) *tls.Config {
	t.Helper()
	ca, _ := os.ReadFile(f.dir + "/" + pki.RootFile)
	c, err := pki.TrustConfig(ca)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// A live worker's ID is refused with the token; the enrollment waits and
// succeeds once the holder's registration is gone.
func TestEnrollLiveIDRefusedUntilItLeaves(t *testing.T) {
	f := newFixture(t)
	f.setLive("w1", true)
	c := f.client(t, "w1", token)
	err := c.once(ctxT(t, 10*time.Second), mustTrust(t, f), token)
	if status.Code(err) != codes.AlreadyExists || !strings.Contains(err.Error(), "live worker holds this ID") {
		t.Fatalf("live ID: %v, want AlreadyExists naming the live worker", err)
	}
	// Enroll retries it; it fails at the deadline while w1 stays live...
	if err := c.Enroll(ctxT(t, 3*time.Second)); err == nil || !strings.Contains(err.Error(), "live worker holds this ID") {
		t.Fatalf("Enroll while w1 is live: %v", err)
	}
	// ...and succeeds once it has left.
	done := make(chan error, 1)
	go func() { done <- c.Enroll(ctxT(t, 20*time.Second)) }()
	f.setLive("w1", false)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// A standby refuses (Unavailable, retried); the worker checks that the
// server is the coordinator it looked up.
func TestEnrollLeaderAndServerIdentity(t *testing.T) {
	f := newFixture(t)
	f.leading.Store(false)
	c := f.client(t, "w1", token)
	err := c.once(ctxT(t, 10*time.Second), mustTrust(t, f), token)
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("standby: %v, want Unavailable", err)
	}
	f.leading.Store(true)
	c.cfg.Locate = func(context.Context) (string, string, error) { return f.addr, "c2", nil }
	if err := c.once(ctxT(t, 10*time.Second), mustTrust(t, f), token); err == nil || !strings.Contains(err.Error(), "want coordinator:c2") {
		t.Fatalf("a server that is not the leader named in etcd: %v", err)
	}
	// A client trusting another CA refuses the coordinator.
	other, err := pki.NewAuthority(run, time.Now(), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	c = f.client(t, "w1", token)
	c.cfg.CA = other.RootPEM()
	if err := c.Enroll(ctxT(t, 2*time.Second)); err == nil {
		t.Fatal("enrolled with a coordinator of another CA")
	}
}

// With a list of addresses, the worker asks each in turn until the leader
// answers.
func TestListLocator(t *testing.T) {
	f := newFixture(t)
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.Addr().String()
	dead.Close() // nothing listens there
	c := f.client(t, "w1", token)
	c.cfg.Locate = ListLocator([]string{deadAddr, f.addr})
	if err := c.Enroll(ctxT(t, 20*time.Second)); err != nil {
		t.Fatal(err)
	}
}

func TestRenewAt(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		life time.Duration
		want time.Duration
	}{{time.Hour, 30 * time.Minute}, {24 * time.Hour, 12 * time.Hour}, {2 * time.Minute, time.Minute}} {
		if got := RenewAt(t0, t0.Add(tc.life)).Sub(t0); got != tc.want {
			t.Errorf("RenewAt after %v = %v, want %v", tc.life, got, tc.want)
		}
	}
}

func TestValidID(t *testing.T) {
	for id, want := range map[string]bool{"worker-1": true, "w.1_a": true, "ringtrain-worker-3": true,
		"": false, "-x": false, "a/b": false, "a:b": false, "a b": false, strings.Repeat("a", 129): false} {
		if ValidID(id) != want {
			t.Errorf("ValidID(%q) = %v, want %v", id, !want, want)
		}
	}
}

// A worker's etcd user is provisioned before its certificate is returned,
// at enrollment and at renewal; without it no certificate is issued, and
// the refusal says to retry (Unavailable).
func TestEnrollProvisionsTheWorkersEtcdUser(t *testing.T) {
	f := newFixture(t)
	c := f.client(t, "w1", token)
	if err := c.Enroll(ctxT(t, 20*time.Second)); err != nil {
		t.Fatal(err)
	}
	src, err := pki.NewSource(c.Files())
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Renew(ctxT(t, 20*time.Second), src); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	got := slices.Clone(f.provisioned)
	f.provisionErr = errors.New("etcd unreachable")
	f.mu.Unlock()
	if !slices.Equal(got, []string{"w1", "w1"}) {
		t.Fatalf("provisioned %v, want w1 at enrollment and at renewal", got)
	}
	err = rawEnroll(t, f, "w2", token)
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "etcd user") {
		t.Fatalf("enrollment with provisioning failing: %v, want Unavailable naming the etcd user", err)
	}
}
