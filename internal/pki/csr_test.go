package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"os"
	"testing"
	"time"
)

// A leaf issued over a request carries the identity the authority chose,
// not the one the request asked for, and its key is the requester's.
func TestIssueCSR(t *testing.T) {
	_, a := newDir(t)
	csr, keyPEM, err := NewCSR(Worker(run, "asked"))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	chain, err := a.IssueCSR(Worker(run, "w7"), csr, IssueOptions{Now: now, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ParseLeaf(chain)
	if err != nil {
		t.Fatal(err)
	}
	if id, err := IdentityOf(leaf); err != nil || id != Worker(run, "w7") {
		t.Fatalf("identity %+v, %v; want worker:w7", id, err)
	}
	if got := leaf.NotAfter.Sub(now); got > time.Hour {
		t.Errorf("valid %v after now, want at most 1h", got)
	}
	key, err := parseKey(keyPEM)
	if err != nil || !publicEqual(key.Public(), leaf.PublicKey) {
		t.Fatalf("the leaf's key is not the request's (%v)", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(a.Root)
	inter := x509.NewCertPool()
	inter.AddCert(a.Intermediate)
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatalf("the leaf does not chain to the root: %v", err)
	}

	// Garbage, and a key of another curve, are refused.
	if _, err := a.IssueCSR(Worker(run, "w7"), []byte("not a request"), IssueOptions{}); !errors.Is(err, ErrBadCSR) {
		t.Errorf("garbage: %v, want ErrBadCSR", err)
	}
	k384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	other, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, k384)
	if _, err := a.IssueCSR(Worker(run, "w7"), other, IssueOptions{}); !errors.Is(err, ErrBadCSR) {
		t.Errorf("P-384 key: %v, want ErrBadCSR", err)
	}
	// A request whose signature does not verify is refused.
	csr[len(csr)-1] ^= 1
	if _, err := a.IssueCSR(Worker(run, "w7"), csr, IssueOptions{}); !errors.Is(err, ErrBadCSR) {
		t.Errorf("tampered request: %v, want ErrBadCSR", err)
	}
}

// A server that admits clients without certificates still verifies the
// ones presented; a client with only the CA verifies the server.
func TestOptionalClientAndTrustConfig(t *testing.T) {
	c1, w1 := Coordinator(run, "c1"), Worker(run, "w1")
	dir, _ := newDir(t, c1, w1)
	srv := source(t, dir, c1)
	ca, err := os.ReadFile(DirFiles(LeafDir(dir, c1)).CA)
	if err != nil {
		t.Fatal(err)
	}
	anon, err := TrustConfig(ca)
	if err != nil {
		t.Fatal(err)
	}
	_, seen, serr, cerr := handshake(t, srv.OptionalClientServerConfig(), anon)
	if cerr != nil || !errors.Is(serr, ErrNoPeerCertificate) || seen != c1 {
		t.Fatalf("anonymous client: server %v (want ErrNoPeerCertificate), client %v, saw %+v", serr, cerr, seen)
	}
	seenBy, _, serr, cerr := handshake(t, srv.OptionalClientServerConfig(), source(t, dir, w1).ClientConfig())
	if serr != nil || cerr != nil || seenBy != w1 {
		t.Fatalf("client with a certificate: server %v, client %v, saw %+v", serr, cerr, seenBy)
	}
	// A certificate of another CA is refused, not taken as none.
	dir2, _ := newDir(t, w1)
	if _, _, serr, _ := handshake(t, srv.OptionalClientServerConfig(), source(t, dir2, w1).ClientConfig()); serr == nil {
		t.Fatal("a stranger's certificate was accepted")
	}
	// The mutual config still refuses a client without a certificate.
	if _, _, serr, _ := handshake(t, srv.ServerConfig(), anon); serr == nil {
		t.Fatal("ServerConfig admitted a client without a certificate")
	}
	// A trust config of another CA refuses the server.
	ca2, _ := os.ReadFile(DirFiles(LeafDir(dir2, w1)).CA)
	other, _ := TrustConfig(ca2)
	if _, _, _, cerr := handshake(t, srv.OptionalClientServerConfig(), other); cerr == nil {
		t.Fatal("a client trusting another CA accepted the server")
	}
	if _, err := TrustConfig([]byte("x")); err == nil {
		t.Fatal("TrustConfig accepted a bundle without certificates")
	}
}
