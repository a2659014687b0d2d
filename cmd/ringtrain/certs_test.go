package main

import (
	"crypto/tls"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ringtrain/ringtrain/cluster"
	"github.com/ringtrain/ringtrain/internal/httpauth"
	"github.com/ringtrain/ringtrain/internal/pki"
)

func TestCertsWritesTheLayoutAndRefusesToOverwrite(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	code, out, errs := runCLI("certs", "--out", dir, "--run", "r1", "--workers", "2", "--worker-ids", "w9", "--coordinators", "c1")
	if code != 0 {
		t.Fatalf("certs: exit %d: %s", code, errs)
	}
	for _, f := range []string{"ca.pem", "ca/intermediate.pem", "ca/intermediate-key.pem", "ca/root-key.pem",
		"worker/worker-1/cert.pem", "worker/worker-2/key.pem", "worker/w9/ca.pem", "coordinator/c1/cert.pem"} {
		if !strings.Contains(out, filepath.Join(dir, f)) {
			t.Errorf("stdout does not list %s", f)
		}
		fi, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasSuffix(f, "key.pem") && fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", f, fi.Mode().Perm())
		}
	}
	src, err := pki.NewSource(pki.DirFiles(filepath.Join(dir, "worker", "w9")))
	if err != nil {
		t.Fatal(err)
	}
	if id := src.Identity(); id != pki.Worker("r1", "w9") {
		t.Fatalf("worker/w9 holds %+v", id)
	}

	code, _, errs = runCLI("certs", "--out", dir, "--run", "r1", "--workers", "1")
	want := filepath.Join(dir, "worker", "worker-1", "cert.pem") + " exists; pass --force"
	if code != 2 || !strings.Contains(errs, want) || strings.Count(errs, "\n") != 1 {
		t.Fatalf("over existing files: exit %d, stderr %q; want 2 and one line with %q", code, errs, want)
	}
	before, _ := os.ReadFile(filepath.Join(dir, "worker", "worker-1", "cert.pem"))
	ca, _ := os.ReadFile(filepath.Join(dir, "ca.pem"))
	if code, _, errs = runCLI("certs", "--out", dir, "--run", "r1", "--workers", "1", "--force"); code != 0 {
		t.Fatalf("--force: exit %d: %s", code, errs)
	}
	after, _ := os.ReadFile(filepath.Join(dir, "worker", "worker-1", "cert.pem"))
	ca2, _ := os.ReadFile(filepath.Join(dir, "ca.pem"))
	if string(before) == string(after) || string(ca) != string(ca2) {
		t.Fatal("--force should re-issue the leaf under the same CA")
	}
	// The re-issued leaf and an untouched one still trust each other.
	for _, id := range []string{"worker-1", "worker-2"} {
		f := pki.DirFiles(filepath.Join(dir, "worker", id))
		if _, err := tls.LoadX509KeyPair(f.Cert, f.Key); err != nil {
			t.Fatal(err)
		}
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"certs"}, "--out is required"},
		{[]string{"certs", "--out", dir, "--run", "r2", "--workers", "1"}, `CA of run "r1"`},
		{[]string{"certs", "--out", t.TempDir(), "--worker-ids", "a/b"}, `--worker-ids: "a/b"`},
	} {
		if code, _, errs := runCLI(tc.args...); code != 2 || !strings.Contains(errs, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want 2 and %q", tc.args, code, errs, tc.want)
		}
	}
}

// What a compose init service writes: the coordinators' directory without
// the root key, the workers' directory with only the CA, the token and the
// gossip key; a re-run with --force rotates the leaves and keeps the
// token and the key.
func TestCertsForEnrollment(t *testing.T) {
	tmp := t.TempDir()
	dir, workers, root := filepath.Join(tmp, "certs"), filepath.Join(tmp, "workers"), filepath.Join(tmp, "root")
	args := []string{"certs", "--out", dir, "--run", "r1", "--coordinators", "c1,c2", "--enroll-token", "--gossip-key",
		"--worker-out", workers, "--root-key-dir", root}
	if code, _, errs := runCLI(args...); code != 0 {
		t.Fatalf("certs: exit %d: %s", code, errs)
	}
	if _, err := os.Stat(filepath.Join(dir, pki.RootKeyFile)); err == nil {
		t.Error("the root key is in --out, where coordinators mount it")
	}
	if _, err := os.Stat(filepath.Join(root, "root-key.pem")); err != nil {
		t.Errorf("the root key is not in --root-key-dir: %v", err)
	}
	if _, err := pki.LoadAuthorityDir(dir); err != nil {
		t.Errorf("--out cannot issue (what --ca-dir loads): %v", err)
	}
	var names []string
	entries, _ := os.ReadDir(workers)
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if strings.Join(names, " ") != "ca.pem enroll.token gossip.key" {
		t.Errorf("--worker-out holds %v, want ca.pem, enroll.token and gossip.key only", names)
	}
	token, _ := os.ReadFile(filepath.Join(dir, "enroll.token"))
	if tok, err := httpauth.ReadTokenFile("t", filepath.Join(workers, "enroll.token")); err != nil || tok != strings.TrimSpace(string(token)) {
		t.Errorf("the workers' token %q (%v) is not the coordinators' %q", tok, err, token)
	}
	if _, err := cluster.ReadGossipKeyFile("k", filepath.Join(workers, "gossip.key")); err != nil {
		t.Error(err)
	}
	if fi, _ := os.Stat(filepath.Join(dir, "enroll.token")); fi.Mode().Perm() != 0o600 {
		t.Errorf("enroll.token mode %v, want 0600", fi.Mode().Perm())
	}
	cert, _ := os.ReadFile(filepath.Join(dir, "coordinator", "c1", "cert.pem"))
	if code, _, errs := runCLI(append(args, "--force")...); code != 0 {
		t.Fatalf("re-run with --force: exit %d: %s", code, errs)
	}
	cert2, _ := os.ReadFile(filepath.Join(dir, "coordinator", "c1", "cert.pem"))
	token2, _ := os.ReadFile(filepath.Join(workers, "enroll.token"))
	if string(cert) == string(cert2) || string(token) != string(token2) {
		t.Error("a re-run should re-issue the leaves and keep the token")
	}
}

// --etcd-members issues each member's etcd-server and etcd-peer leaves for
// its name and --etcd-hosts, which etcd's clients and peers check.
func TestCertsEtcdMembers(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	code, _, errs := runCLI("certs", "--out", dir, "--run", "r1", "--etcd-members", "etcd-0,etcd-1", "--etcd-hosts", "localhost,127.0.0.1")
	if code != 0 {
		t.Fatalf("certs: exit %d: %s", code, errs)
	}
	for _, m := range []string{"etcd-0", "etcd-1"} {
		for _, role := range []pki.Role{pki.RoleEtcdServer, pki.RoleEtcdPeer} {
			src, err := pki.NewSource(pki.DirFiles(filepath.Join(dir, string(role), m)))
			if err != nil {
				t.Fatal(err)
			}
			cert, err := tls.LoadX509KeyPair(src.Files().Cert, src.Files().Key)
			if err != nil {
				t.Fatal(err)
			}
			leaf := cert.Leaf
			if leaf.Subject.CommonName != string(role)+":"+m || !slices.Contains(leaf.DNSNames, m) || !slices.Contains(leaf.DNSNames, "localhost") ||
				len(leaf.IPAddresses) != 1 || !leaf.IPAddresses[0].Equal(net.IPv4(127, 0, 0, 1)) {
				t.Fatalf("%s/%s: CN %q, DNS %v, IPs %v", role, m, leaf.Subject.CommonName, leaf.DNSNames, leaf.IPAddresses)
			}
		}
	}
}

// --etcd-out copies the members' etcd-server and etcd-peer directories and
// the clients', and only those, for the etcd containers (compose's
// certs-etcd volume).
func TestCertsEtcdOut(t *testing.T) {
	tmp := t.TempDir()
	dir, etcdDir := filepath.Join(tmp, "certs"), filepath.Join(tmp, "etcd")
	code, _, errs := runCLI("certs", "--out", dir, "--run", "r1", "--coordinators", "c1", "--clients", "ops", "--etcd-members", "etcd", "--etcd-out", etcdDir)
	if code != 0 {
		t.Fatalf("certs: exit %d: %s", code, errs)
	}
	var got []string
	filepath.WalkDir(etcdDir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(etcdDir, p)
			got = append(got, rel)
		}
		return err
	})
	want := []string{"client/ops/ca.pem", "client/ops/cert.pem", "client/ops/key.pem", "etcd-peer/etcd/ca.pem", "etcd-peer/etcd/cert.pem", "etcd-peer/etcd/key.pem",
		"etcd-server/etcd/ca.pem", "etcd-server/etcd/cert.pem", "etcd-server/etcd/key.pem"}
	if !slices.Equal(got, want) {
		t.Fatalf("--etcd-out holds %v, want %v", got, want)
	}
	for _, f := range want {
		a, _ := os.ReadFile(filepath.Join(dir, f))
		b, _ := os.ReadFile(filepath.Join(etcdDir, f))
		if len(a) == 0 || string(a) != string(b) {
			t.Errorf("%s: the copy differs from --out's", f)
		}
	}
	if st, err := os.Stat(filepath.Join(etcdDir, "etcd-server/etcd/key.pem")); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("the copied key: %v, %v; want mode 0600", st, err)
	}
	code, _, errs = runCLI("certs", "--out", dir, "--run", "r1", "--etcd-out", etcdDir)
	if code != 2 || !strings.Contains(errs, "--etcd-members") {
		t.Errorf("--etcd-out without --etcd-members: exit %d, %q; want 2 naming --etcd-members", code, errs)
	}
}
