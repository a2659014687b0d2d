package coordinator

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/ringtrain/ringtrain/enroll"
	"github.com/ringtrain/ringtrain/internal/pki"
	"github.com/ringtrain/ringtrain/internal/usage"
)

const enrollToken = "0123456789abcdef0123456789abcdef"

// tlsConfig is TestConfig with a certificate for the coordinator, the
// run's intermediate CA in CADir (no root key) and a bootstrap token.
func tlsConfig(t *testing.T, etcd []string, run, id string) (Config, []byte) {
	t.Helper()
	auth, err := pki.NewAuthority(run, time.Now(), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	leaves, err := auth.LeafFiles(dir, []pki.Identity{pki.Coordinator(run, id)}, pki.IssueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var files []pki.File
	for _, f := range auth.CAFiles(dir) {
		if !strings.HasSuffix(f.Path, pki.RootKeyFile) {
			files = append(files, f)
		}
	}
	if err := pki.WriteFiles(append(files, leaves...), false); err != nil {
		t.Fatal(err)
	}
	cfg := TestConfig(etcd, run, id)
	cfg.ListenGRPC = "127.0.0.1:0"
	cfg.TLS = pki.DirFiles(pki.LeafDir(dir, pki.Coordinator(run, id)))
	cfg.CADir = dir
	cfg.EnrollToken = enrollToken
	cfg.EnrollTTL = 5 * time.Minute
	return cfg, auth.RootPEM()
}

// Workers enroll with the leader that etcd names; the TLS port serves
// only Enroll to a caller without a certificate; the plaintext health port
// answers probes.
func TestEnrollWithLeader(t *testing.T) {
	for _, self := range []bool{false, true} {
		name := map[bool]string{false: "given", true: "self-issued"}[self]
		t.Run(name, func(t *testing.T) { testEnrollWithLeader(t, "enroll-"+name, self) })
	}
}

// testEnrollWithLeader runs TestEnrollWithLeader with the coordinator's
// certificate from --tls-dir, or (self) issued by itself from --ca-dir.
func testEnrollWithLeader(t *testing.T, run string, self bool) {
	e, cl, _ := startRun(t, run)
	cfg, ca := tlsConfig(t, e.Endpoints(), run, "c1")
	if self {
		cfg.TLS = pki.Files{}
	}
	c, _ := runCoordinator(t, cfg)
	if got := c.sec.tls.Identity(); got != pki.Coordinator(run, "c1") {
		t.Fatalf("the coordinator's identity is %+v", got)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !c.IsLeader() && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if !c.IsLeader() {
		t.Fatal("c1 did not lead within 10 s")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	newClient := func(id string) *enroll.Client {
		return enroll.NewClient(enroll.ClientConfig{Run: run, ID: id, CA: ca, Token: enrollToken,
			Locate: enroll.LeaderLocator(cl), Dir: filepath.Join(t.TempDir(), "tls"), Logger: zaptest.NewLogger(t)})
	}
	w := newClient("w1")
	if err := w.Enroll(ctx); err != nil {
		t.Fatal(err)
	}
	src, err := pki.NewSource(w.Files())
	if err != nil {
		t.Fatal(err)
	}
	if got := src.Identity(); got != pki.Worker(run, "w1") {
		t.Fatalf("enrolled as %+v", got)
	}
	b, _ := os.ReadFile(w.Files().Cert)
	leaf, _ := pki.ParseLeaf(b)
	if life := time.Until(leaf.NotAfter); life > cfg.EnrollTTL {
		t.Errorf("certificate valid for %v more, want at most --enroll-ttl %v", life, cfg.EnrollTTL)
	}

	// Once w1 is registered, its ID is refused to another enrollment;
	// w1 itself renews.
	register(t, cl, "w1", 5*time.Second)
	sctx, scancel := context.WithTimeout(ctx, time.Second)
	defer scancel()
	if err := newClient("w1").Enroll(sctx); err == nil || !strings.Contains(err.Error(), "live worker holds this ID") {
		t.Fatalf("enrolling a live worker's ID: %v", err)
	}
	if err := w.Renew(ctx, src); err != nil {
		t.Fatalf("renew: %v", err)
	}

	// Health: plaintext on --health-addr, for anyone...
	st := c.Status()
	hc := func(addr string, creds credentials.TransportCredentials) (*healthpb.HealthCheckResponse, error) {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
		defer ccancel()
		return healthpb.NewHealthClient(conn).Check(cctx, &healthpb.HealthCheckRequest{Service: HealthServiceLeader})
	}
	if r, err := hc(st.HealthAddr, insecure.NewCredentials()); err != nil || r.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("plaintext health of the leader: %v, %v", r, err)
	}
	// ...and on the TLS port only with the run's certificate.
	trust, _ := pki.TrustConfig(ca)
	if _, err := hc(st.GRPCAddr, credentials.NewTLS(trust)); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("health on the TLS port without a certificate: %v, want Unauthenticated", err)
	}
	if r, err := hc(st.GRPCAddr, credentials.NewTLS(src.ClientConfig())); err != nil || r.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health on the TLS port with a worker's certificate: %v, %v", r, err)
	}
	if _, err := hc(st.GRPCAddr, insecure.NewCredentials()); err == nil {
		t.Fatal("the TLS port answered in plaintext")
	}
}

func TestConfigTLSRequired(t *testing.T) {
	cfg := TestConfig([]string{"127.0.0.1:1"}, "r", "c")
	cfg.ListenGRPC = ":7000"
	err := cfg.Validate()
	if !usage.Is(err) || !strings.Contains(err.Error(), "--tls-dir") || !strings.Contains(err.Error(), "--insecure") {
		t.Fatalf("--listen without a certificate: %v, want a usage error naming --tls-dir and --insecure", err)
	}
	cfg.Insecure = true
	if err := cfg.Validate(); err != nil {
		t.Fatalf("with --insecure: %v", err)
	}
	cfg.Insecure = false
	cfg.CADir = "/x" // the coordinator issues its own certificate
	if err := cfg.Validate(); err != nil {
		t.Fatalf("--ca-dir without --tls-dir: %v", err)
	}
	cfg.ListenGRPC = ""
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "give --listen") {
		t.Fatalf("--ca-dir without --listen: %v", err)
	}
	// A certificate of another identity is refused, naming both.
	cfg, _ = tlsConfig(t, []string{"127.0.0.1:1"}, "r", "c1")
	cfg.ID = "c2"
	if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), "coordinator:c1") {
		t.Fatalf("c1's certificate on c2: %v", err)
	}
}
