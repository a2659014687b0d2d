package worker

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/cluster"
	"github.com/ringtrain/ringtrain/internal/pki"
	"github.com/ringtrain/ringtrain/internal/usage"
)

// testCA is a run's CA in a temporary directory, issuing worker
// certificates on demand.
type testCA struct {
	a   *pki.Authority
	dir string
}

func newTestCA(t *testing.T, run string) *testCA {
	t.Helper()
	a, err := pki.NewAuthority(run, time.Now(), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	c := &testCA{a: a, dir: t.TempDir()}
	if err := pki.WriteFiles(a.CAFiles(c.dir), false); err != nil {
		t.Fatal(err)
	}
	return c
}

// files issues (once) worker id's certificate and returns its files.
func (c *testCA) files(t *testing.T, id string) pki.Files {
	t.Helper()
	ident := pki.Worker(c.a.Run, id)
	f := pki.DirFiles(pki.LeafDir(c.dir, ident))
	if _, err := os.Stat(f.Cert); err == nil {
		return f
	}
	leaves, err := c.a.LeafFiles(c.dir, []pki.Identity{ident}, pki.IssueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := pki.WriteFiles(leaves, false); err != nil {
		t.Fatal(err)
	}
	return f
}

// testCerts issues the run's CA and a worker certificate per id and
// returns each worker's files.
func testCerts(t *testing.T, run string, ids ...string) map[string]pki.Files {
	t.Helper()
	ca := newTestCA(t, run)
	files := make(map[string]pki.Files, len(ids))
	for _, id := range ids {
		files[id] = ca.files(t, id)
	}
	return files
}

// A worker without a certificate is refused, naming the flag and the fix,
// unless Insecure; so is one holding another worker's certificate.
func TestWorkerTLSConfig(t *testing.T) {
	certs := testCerts(t, "r", "w1", "w2")
	c := DefaultConfig()
	c.Etcd, c.Run, c.ID, c.Insecure = []string{"127.0.0.1:2379"}, "r", "w1", true
	if _, err := New(c); err != nil {
		t.Fatalf("Insecure without a certificate: %v", err)
	}
	c.Insecure = false
	c.GossipKey = make([]byte, 32)
	_, err := New(c)
	if !usage.Is(err) || !strings.Contains(err.Error(), "--tls-dir") || !strings.Contains(err.Error(), "ringtrain certs --out DIR") || !strings.Contains(err.Error(), "--insecure") {
		t.Fatalf("no certificate: %v; want a usage error naming --tls-dir, ringtrain certs and --insecure", err)
	}
	c.TLS = certs["w2"]
	if _, err := New(c); !usage.Is(err) || !strings.Contains(err.Error(), "certificate of worker:w2, not of worker:w1") {
		t.Fatalf("another worker's certificate: %v", err)
	}
	c.TLS = certs["w1"]
	c.TLS.Key = ""
	if _, err := New(c); !usage.Is(err) || !strings.Contains(err.Error(), "--tls-key is not set") {
		t.Fatalf("no key: %v", err)
	}
	c.TLS = certs["w1"]
	w, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	if got := w.identities(clusterGen("w2", "w1")); strings.Join(got, ",") != "worker:w2,worker:w1" {
		t.Fatalf("identities = %v", got)
	}
}

func clusterGen(ids ...string) cluster.Generation {
	g := cluster.Generation{Gen: 1}
	for _, id := range ids {
		g.Members = append(g.Members, cluster.Member{ID: id, Addr: id + ":7070"})
	}
	return g
}
