package cluster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/ringtrain/ringtrain/internal/pki"
	"github.com/ringtrain/ringtrain/train"
)

// secureEtcd is an embedded etcd serving mutual TLS with auth on, as
// `ringtrain local` runs it: its users are coordinator c1 (root) and the
// workers given, provisioned before auth was enabled.
type secureEtcd struct {
	e   *Etcd
	dir string
	ca  *pki.Authority
	run string
}

func startSecureEtcd(t *testing.T, run string, workers ...string) *secureEtcd {
	t.Helper()
	ca, err := pki.NewAuthority(run, time.Now(), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	s := &secureEtcd{dir: t.TempDir(), ca: ca, run: run}
	files := ca.CAFiles(s.dir)
	server := pki.Identity{Run: run, Role: pki.RoleEtcdServer, ID: "e1"}
	leaf, err := ca.LeafFiles(s.dir, []pki.Identity{server}, pki.IssueOptions{IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"}})
	if err != nil {
		t.Fatal(err)
	}
	ids := []pki.Identity{pki.Coordinator(run, "c1"), {Run: run, Role: pki.RoleClient, ID: "ops"}}
	for _, w := range workers {
		ids = append(ids, pki.Worker(run, w))
	}
	leaves, err := ca.LeafFiles(s.dir, ids, pki.IssueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := pki.WriteFiles(append(append(files, leaf...), leaves...), false); err != nil {
		t.Fatal(err)
	}
	s.e, err = StartEtcd(EtcdConfig{Dir: t.TempDir(), ListenClientURLs: "https://127.0.0.1:0", ListenPeerURLs: "http://127.0.0.1:0", Fast: true,
		TLS: pki.DirFiles(pki.LeafDir(s.dir, server))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.e.Close)
	ctx := testCtx(t, 20*time.Second)
	admin := s.client(t, pki.Coordinator(run, "c1"))
	if err := EnsureCoordinatorUser(ctx, admin, "c1"); err != nil {
		t.Fatal(err)
	}
	for _, w := range workers {
		if err := EnsureWorkerUser(ctx, admin, run, w); err != nil {
			t.Fatal(err)
		}
	}
	if err := EnsureClientUser(ctx, admin, run, "ops"); err != nil {
		t.Fatal(err)
	}
	if err := EnableAuth(ctx, admin); err != nil {
		t.Fatal(err)
	}
	return s
}

// client is an etcd client presenting id's certificate, closed with the test.
func (s *secureEtcd) client(t *testing.T, id pki.Identity) *clientv3.Client {
	t.Helper()
	src, err := pki.NewSource(pki.DirFiles(pki.LeafDir(s.dir, id)))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := SecureEtcd(EtcdClientConfig(s.e.Endpoints(), nil), src, "--tls-dir")
	if err != nil {
		t.Fatal(err)
	}
	cli, err := clientv3.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

func (s *secureEtcd) runClient(t *testing.T, id pki.Identity) *Client {
	t.Helper()
	return NewClient(s.client(t, id), s.run, zaptest.NewLogger(t, zaptest.Level(zap.ErrorLevel)))
}

func isDenied(err error) bool { return errors.Is(err, rpctypes.ErrPermissionDenied) }

// A worker's certificate cannot write the keys only coordinators write —
// the generation, the spec, the checkpoint pointer, done, the run's
// fingerprint, the event log — nor another worker's keys (w1 is not w10),
// while it reads the run and writes its own keys; a coordinator's
// certificate writes them all.
func TestWorkerCertificateCannotWriteCoordinatorKeys(t *testing.T) {
	s := startSecureEtcd(t, "rbac", "w1", "w10")
	ctx := testCtx(t, 30*time.Second)
	coord := s.runClient(t, pki.Coordinator("rbac", "c1"))
	w1 := s.runClient(t, pki.Worker("rbac", "w1"))

	// The coordinator writes what only it may.
	if _, err := coord.PutSpecIfAbsent(ctx, testSpec(1, 0)); err != nil {
		t.Fatalf("coordinator writes the spec: %v", err)
	}
	always := clientv3.Compare(clientv3.CreateRevision(coord.Key(KeyGeneration)), "=", 0)
	if won, err := coord.PutGeneration(ctx, Generation{Gen: 1, Members: []Member{{ID: "w1", Addr: "a"}}}, always); err != nil || !won {
		t.Fatalf("coordinator writes the generation: %v %v", won, err)
	}

	// The worker reads the run...
	if g, ok, err := w1.Generation(ctx); err != nil || !ok || g.Gen != 1 {
		t.Fatalf("worker reads the generation: %+v %v %v", g, ok, err)
	}
	if _, err := w1.Spec(ctx); err != nil {
		t.Fatalf("worker reads the spec: %v", err)
	}
	// ... but cannot write a key of the coordinators'.
	for name, write := range map[string]func() error{
		"generation": func() error {
			_, err := w1.Etcd().Put(ctx, w1.Key(KeyGeneration), Marshal(Generation{Gen: 99}))
			return err
		},
		"generation (guarded txn)": func() error {
			_, err := w1.PutGeneration(ctx, Generation{Gen: 99}, clientv3.Compare(clientv3.Version(w1.Key(KeyGeneration)), ">", 0))
			return err
		},
		"spec": func() error {
			_, err := w1.Etcd().Put(ctx, w1.Key(KeySpec), Marshal(testSpec(5, 0)))
			return err
		},
		"checkpoint pointer": func() error {
			_, err := w1.PublishCheckpoint(ctx, CheckpointRef{Step: 1 << 40, Dir: "step-evil"})
			return err
		},
		"done": func() error {
			_, err := w1.MarkDone(ctx, train.Summary{Step: 1})
			return err
		},
		"fingerprint": func() error {
			_, err := w1.PutFingerprintIfAbsent(ctx, train.Fingerprint{Threads: 7})
			return err
		},
		"events": func() error { return w1.AddEvent(ctx, Event{Kind: "generation", Detail: "forged"}) },
		"delete the generation": func() error {
			_, err := w1.Etcd().Delete(ctx, w1.Key(KeyGeneration))
			return err
		},
		"w10's registration": func() error {
			_, err := w1.Etcd().Put(ctx, w1.Key(KeyWorkers+"w10"), Marshal(WorkerInfo{ID: "w10"}))
			return err
		},
		"w10's failure report": func() error {
			return w1.ReportFailure(ctx, Failure{Reporter: "w10", Gen: 1})
		},
		"w10's checkpoint report": func() error { return w1.ReportCheckpoint(ctx, "w10", CheckpointRef{Step: 5, Dir: "x"}) },
		"w10's finished report":   func() error { return w1.ReportFinished(ctx, "w10", train.Summary{Step: 5}) },
		"w10's progress":          func() error { return w1.PublishProgress(ctx, "w10", Progress{Gen: 9}) },
		"a key outside the run": func() error {
			_, err := w1.Etcd().Put(ctx, "/ringtrain/other/generation", "{}")
			return err
		},
	} {
		if err := write(); !isDenied(err) {
			t.Errorf("worker w1 writing %s: %v, want permission denied", name, err)
		}
	}
	if g, _, err := coord.Generation(ctx); err != nil || g.Gen != 1 {
		t.Fatalf("the generation after the worker's attempts: %+v %v, want gen 1", g, err)
	}
	if _, done, err := coord.Done(ctx); err != nil || done {
		t.Fatalf("done after the worker's attempts: %v %v", done, err)
	}

	// Its own keys it writes, the registration under a lease included.
	reg, err := w1.Register(ctx, WorkerInfo{ID: "w1", Addr: "127.0.0.1:1"}, 5*time.Second)
	if err != nil {
		t.Fatalf("worker registers: %v", err)
	}
	for name, write := range map[string]func() error{
		"failure":    func() error { return w1.ReportFailure(ctx, Failure{Reporter: "w1", Gen: 1}) },
		"progress":   func() error { return w1.PublishProgress(ctx, "w1", Progress{Gen: 1, Step: 3}) },
		"checkpoint": func() error { return w1.ReportCheckpoint(ctx, "w1", CheckpointRef{Step: 3, Dir: "step-00000003"}) },
		"finished":   func() error { return w1.ReportFinished(ctx, "w1", train.Summary{Step: 3}) },
	} {
		if err := write(); err != nil {
			t.Errorf("worker w1 writing its %s: %v", name, err)
		}
	}
	if p, ok, err := coord.Progress(ctx); err != nil || !ok || p.Step != 3 {
		t.Fatalf("progress as the coordinator reads it: %+v %v %v", p, ok, err)
	}
	if err := reg.Close(); err != nil {
		t.Fatalf("worker revokes its registration's lease: %v", err)
	}

	// The coordinator writes the pointer and done.
	if won, err := coord.PublishCheckpoint(ctx, CheckpointRef{Step: 3, Dir: "step-00000003"}); err != nil || !won {
		t.Fatalf("coordinator publishes the checkpoint: %v %v", won, err)
	}
	if stored, err := coord.MarkDone(ctx, train.Summary{Step: 3}); err != nil || !stored {
		t.Fatalf("coordinator marks done: %v %v", stored, err)
	}

	// A tool's certificate reads the run and writes nothing.
	ops := s.runClient(t, pki.Identity{Run: "rbac", Role: pki.RoleClient, ID: "ops"})
	if _, err := ReadSnapshot(ctx, ops, 10); err != nil {
		t.Fatalf("a client certificate reads the snapshot: %v", err)
	}
	if err := ops.PublishProgress(ctx, "w1", Progress{}); !isDenied(err) {
		t.Fatalf("a client certificate writes progress: %v, want permission denied", err)
	}
}

// A certificate of the run's CA whose name etcd does not know (a worker
// never provisioned) is refused every request.
func TestUnprovisionedWorkerRefused(t *testing.T) {
	s := startSecureEtcd(t, "rbac")
	ident := pki.Worker("rbac", "stranger")
	leaves, err := s.ca.LeafFiles(s.dir, []pki.Identity{ident}, pki.IssueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := pki.WriteFiles(leaves, false); err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t, 20*time.Second)
	c := s.runClient(t, ident)
	if _, err := c.Etcd().Put(ctx, c.Key(KeyWorkers+"stranger"), "{}"); err == nil {
		t.Fatal("an unprovisioned worker registered")
	}
	if _, err := c.Etcd().Get(ctx, c.Key(KeySpec)); err == nil {
		t.Fatal("an unprovisioned worker read the run")
	}
}

// A client without a certificate, or with one of another CA, is refused at
// the TLS handshake.
func TestEtcdRefusesClientsWithoutTheRunsCertificate(t *testing.T) {
	s := startSecureEtcd(t, "rbac")
	addr := strings.TrimPrefix(s.e.Endpoints()[0], "https://")
	roots := x509.NewCertPool()
	roots.AddCert(s.ca.Root)
	other, err := pki.NewAuthority("rbac", time.Now(), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	kp, err := other.Issue(pki.Coordinator("rbac", "c1"), pki.IssueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := tls.X509KeyPair(kp.Cert, kp.Key)
	if err != nil {
		t.Fatal(err)
	}
	for name, certs := range map[string][]tls.Certificate{"no certificate": nil, "another CA's coordinator certificate": {foreign}} {
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr,
			&tls.Config{MinVersion: tls.VersionTLS13, RootCAs: roots, ServerName: "127.0.0.1", Certificates: certs, NextProtos: []string{"h2"}})
		if err == nil {
			// TLS 1.3: the server's verdict on the client arrives after the client's Finished.
			conn.SetDeadline(time.Now().Add(5 * time.Second))
			_, err = conn.Read(make([]byte, 1))
			conn.Close()
		}
		if err == nil || !strings.Contains(err.Error(), "certificate") {
			t.Errorf("%s: %v, want a TLS alert about the certificate", name, err)
		}
	}
	// And through the etcd client: no request gets through.
	cfg := EtcdClientConfig(s.e.Endpoints(), nil)
	cfg.TLS = &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: roots, ServerName: "127.0.0.1"}
	cfg.DialTimeout = time.Second
	cli, err := clientv3.New(cfg)
	if err == nil {
		defer cli.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if _, err := cli.Get(ctx, Key("rbac", KeySpec)); err == nil {
			t.Fatal("a client without a certificate read the run")
		}
	}
	// TLS 1.2 is refused too.
	conn, err := tls.Dial("tcp", addr, &tls.Config{MaxVersion: tls.VersionTLS12, RootCAs: roots, ServerName: "127.0.0.1"})
	if err == nil {
		conn.Close()
		t.Fatal("etcd accepted TLS 1.2")
	}
}

// https:// endpoints need a certificate: a usage error names the flag.
func TestSecureEtcdNeedsACertificate(t *testing.T) {
	_, err := SecureEtcd(EtcdClientConfig([]string{"https://etcd:2379"}, nil), nil, "--tls-dir")
	if err == nil || !strings.Contains(err.Error(), "--tls-dir") {
		t.Fatalf("https without a certificate: %v", err)
	}
	cfg, err := SecureEtcd(EtcdClientConfig([]string{"etcd:2379"}, nil), nil, "--tls-dir")
	if err != nil || cfg.TLS != nil {
		t.Fatalf("plaintext endpoints: %v %v", cfg.TLS, err)
	}
}
