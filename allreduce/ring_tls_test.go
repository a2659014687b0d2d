package allreduce

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/ringtrain/ringtrain/internal/pki"
)

const tlsRun = "run-test"

// certDir issues the run's CA and a leaf per identity into a temporary
// directory.
func certDir(t *testing.T, ids ...pki.Identity) string {
	t.Helper()
	a, err := pki.NewAuthority(tlsRun, time.Now(), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	leaves, err := a.LeafFiles(dir, ids, pki.IssueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := pki.WriteFiles(append(a.CAFiles(dir), leaves...), false); err != nil {
		t.Fatal(err)
	}
	return dir
}

func identify(c *x509.Certificate) (string, error) {
	id, err := pki.IdentityOf(c)
	return id.String(), err
}

// tlsFor is the TLS of identity id's files in dir.
func tlsFor(t *testing.T, dir string, id pki.Identity) TLS {
	t.Helper()
	src, err := pki.NewSource(pki.DirFiles(pki.LeafDir(dir, id)))
	if err != nil {
		t.Fatal(err)
	}
	return TLS{Server: src.ServerConfig(), Client: src.ClientConfig(), Identify: identify}
}

func tlsTransport(t *testing.T, c TLS) *GRPCTransport {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tr, err := NewGRPCTransport(lis, WithGRPCLogger(zaptest.NewLogger(t)), WithTLS(c))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	return tr
}

// members are the ring of the TLS tests: workers w0, w1, w2.
var members = []pki.Identity{pki.Worker(tlsRun, "w0"), pki.Worker(tlsRun, "w1"), pki.Worker(tlsRun, "w2")}

func memberIDs() []string {
	ids := make([]string, len(members))
	for i, m := range members {
		ids[i] = m.String()
	}
	return ids
}

func withIdentities(c *Config) { c.Identities = memberIDs() }

func TestAllReduceTLS(t *testing.T) {
	dir := certDir(t, members...)
	ts := make([]Transport, len(members))
	for i, m := range members {
		ts[i] = tlsTransport(t, tlsFor(t, dir, m))
	}
	rings := buildRings(t, ts, seq(3), 1, withIdentities)
	for _, l := range []int{0, 1, 10007, 1000003} {
		checkAllReduce(t, rings, l)
	}
	checkFloatAllReduce(t, rings, 4099, 3)
}

// TestTLSRefusesStrangers attacks rank 1 while it waits for its ring: a
// client without a certificate, a valid certificate of a non-member (for
// every rank), a coordinator's, and another member's for rank 0 are all
// refused, and none takes rank 0's place: the ring then forms and sums.
func TestTLSRefusesStrangers(t *testing.T) {
	mallory, coord := pki.Worker(tlsRun, "mallory"), pki.Coordinator(tlsRun, "c1")
	dir := certDir(t, append([]pki.Identity{mallory, coord}, members...)...)
	ts := make([]Transport, len(members))
	for i, m := range members {
		ts[i] = tlsTransport(t, tlsFor(t, dir, m))
	}
	addrs := []string{ts[0].Addr(), ts[1].Addr(), ts[2].Addr()}
	key := SessionKey{RunID: "run-test", Generation: 1}

	// Rank 1 registers generation 1 and waits for rank 2 (not started).
	type built struct {
		r   *Ring
		err error
	}
	victim := make(chan built, 1)
	go func() {
		cfg := testConfig(t, addrs, 1, 1)
		withIdentities(&cfg)
		r, err := NewRing(context.Background(), ts[1], cfg)
		victim <- built{r, err}
	}()

	attack := func(c TLS, from int) error {
		t.Helper()
		tr := tlsTransport(t, c)
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		l, err := tr.Connect(ctx, addrs[1], Hello{Key: key, From: from, To: 1, ToID: members[1].String()})
		if err == nil {
			l.Close()
		}
		return err
	}

	// (a) No certificate: the handshake fails; no Hello is ever read.
	noCert := tlsFor(t, dir, mallory)
	noCert.Client = &tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true}
	if err := attack(noCert, 0); err == nil {
		t.Fatal("a client without a certificate opened a stream")
	}
	// Plaintext fails too.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	if l, err := grpcTransport(t).Connect(ctx, addrs[1], Hello{Key: key, From: 0, To: 1}); err == nil {
		l.Close()
		t.Fatal("a plaintext client opened a stream")
	}
	cancel()

	// (b) A valid certificate of a non-member, for every rank; a
	// coordinator's certificate.
	for from := range members {
		err := attack(tlsFor(t, dir, mallory), from)
		want := `peer "worker:mallory" claimed rank ` + string(rune('0'+from)) + ` of generation 1`
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("non-member claiming rank %d: %v; want an error with %q", from, err, want)
		}
	}
	if err := attack(tlsFor(t, dir, coord), 0); err == nil || !strings.Contains(err.Error(), `peer "coordinator:c1" claimed rank 0`) {
		t.Fatalf("coordinator claiming rank 0: %v", err)
	}
	// (c) A member's certificate for another member's rank.
	err := attack(tlsFor(t, dir, members[2]), 0)
	if err == nil || !strings.Contains(err.Error(), `peer "worker:w2" claimed rank 0 of generation 1, which is "worker:w0"`) {
		t.Fatalf("rank 2's certificate claiming rank 0: %v", err)
	}

	// The real ranks 0 and 2 join; nobody took rank 0's stream.
	rings := make([]*Ring, 3)
	errs := make([]error, 3)
	done := make(chan struct{})
	go func() {
		defer close(done)
		cfg := testConfig(t, addrs, 1, 2)
		withIdentities(&cfg)
		rings[2], errs[2] = NewRing(context.Background(), ts[2], cfg)
	}()
	cfg := testConfig(t, addrs, 1, 0)
	withIdentities(&cfg)
	rings[0], errs[0] = NewRing(context.Background(), ts[0], cfg)
	<-done
	v := <-victim
	rings[1], errs[1] = v.r, v.err
	for _, r := range rings {
		if r != nil {
			t.Cleanup(func() { r.Close() })
		}
	}
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	checkAllReduce(t, rings, 10007)
}

// TestTLSConnectChecksTheServer: a rank whose right neighbour's address is
// served by another member does not send it anything.
func TestTLSConnectChecksTheServer(t *testing.T) {
	dir := certDir(t, members...)
	t0, t2 := tlsTransport(t, tlsFor(t, dir, members[0])), tlsTransport(t, tlsFor(t, dir, members[2]))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err := t0.Connect(ctx, t2.Addr(), Hello{Key: SessionKey{RunID: "run-test", Generation: 1}, From: 0, To: 1,
		FromID: members[0].String(), ToID: members[1].String()})
	if !errors.Is(err, ErrUnauthorized) || !strings.Contains(err.Error(), `server is "worker:w2", want "worker:w1"`) {
		t.Fatalf("connecting to worker:w2 in place of worker:w1: %v; want a refusal naming both", err)
	}
}

// TestTLSRingWithoutIdentitiesFailsClosed: authenticated transports refuse
// a ring that lists no identities, rather than accept any certificate.
func TestTLSRingWithoutIdentitiesFailsClosed(t *testing.T) {
	dir := certDir(t, members[:2]...)
	ts := []Transport{tlsTransport(t, tlsFor(t, dir, members[0])), tlsTransport(t, tlsFor(t, dir, members[1]))}
	addrs := []string{ts[0].Addr(), ts[1].Addr()}
	errs := make([]error, 2)
	done := make(chan struct{})
	for i := range ts {
		go func() {
			defer func() { done <- struct{}{} }()
			cfg := testConfig(t, addrs, 1, i)
			cfg.ConnectTimeout = 2 * time.Second
			r, err := NewRing(context.Background(), ts[i], cfg)
			if r != nil {
				r.Close()
			}
			errs[i] = err
		}()
	}
	<-done
	<-done
	// Both fail; the first refused (the other may then time out waiting
	// for a generation its peer has dropped).
	if errs[0] == nil || errs[1] == nil {
		t.Fatalf("ranks built a ring without identities over TLS: %v", errs)
	}
	if err := errors.Join(errs...); !strings.Contains(err.Error(), "this ring lists no identities") {
		t.Fatalf("%v; want a refusal naming the missing identities", err)
	}
}
