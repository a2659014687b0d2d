package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/ringtrain/ringtrain/cluster"
	"github.com/ringtrain/ringtrain/internal/pki"
	"github.com/ringtrain/ringtrain/internal/usage"
)

func init() {
	register("certs", "create the run's CA and a certificate per worker and coordinator (mutual TLS)", runCerts)
}

const certsHelp = `Creates the run's certificate authority (a root and an intermediate, ECDSA P-256)
and a key pair per identity, for mutual TLS between workers and coordinators.

Layout of --out DIR:
  DIR/ca.pem                     the run's root certificate, which every process trusts
  DIR/ca/root-key.pem            the root's key (0600): keep it offline
  DIR/ca/intermediate.pem        the intermediate certificate
  DIR/ca/intermediate-key.pem    the intermediate's key (0600): signs the leaves
  DIR/<role>/<id>/cert.pem       a leaf (then the intermediate), identity
                                 spiffe://ringtrain/<run>/<role>/<id>, CN <role>:<id>
  DIR/<role>/<id>/key.pem        its key (0600)
  DIR/<role>/<id>/ca.pem         a copy of DIR/ca.pem
where <role> is worker, coordinator, client, etcd-server or etcd-peer. Give each process its own
directory, and only that one: ringtrain worker --id w1 --tls-dir DIR/worker/w1.

Workers that come and go (compose --scale, a StatefulSet) enroll instead: the
leading coordinator signs their certificates with the intermediate
(ringtrain coordinator --ca-dir DIR --enroll-token-file DIR/enroll.token), and
a worker needs only ca.pem, the token and the gossip key:
  --enroll-token                 also write DIR/enroll.token (0600), the bootstrap token
  --gossip-key                   also write DIR/gossip.key (0600), the run's gossip key
  --worker-out DIR2              copy ca.pem, enroll.token and gossip.key to DIR2 for the workers
  --etcd-out DIR4                copy the etcd members' etcd-server/<m> and etcd-peer/<m>
                                 directories (--etcd-members), and the --clients' client/<name>,
                                 to DIR4 for the etcd containers
  --root-key-dir DIR3            write the root's key to DIR3/root-key.pem instead of
                                 DIR/ca/root-key.pem, so that DIR can be mounted where
                                 coordinators run without it
The token and the gossip key are written only when absent, so that a re-run
(e.g. with --force, to rotate the leaves) keeps the running members' ones.

A CA already in DIR is reused: run again to add identities, or with --force to
re-issue existing leaves (rotation; running processes pick up rewritten files at
their next handshake). Without --force an existing file is an error.`

// certsFlags are `ringtrain certs`' flags.
type certsFlags struct {
	out          string
	run          string
	workers      int
	workerIDs    listFlag
	coordinators listFlag
	clients      listFlag
	etcdMembers  listFlag
	etcdHosts    listFlag
	leafTTL      time.Duration
	force        bool
	enrollToken  bool
	gossipKey    bool
	workerOut    string
	etcdOut      string
	rootKeyDir   string
}

// Files `ringtrain certs` writes besides the CA and the leaves.
const (
	enrollTokenFile = "enroll.token"
	gossipKeyFile   = "gossip.key"
	rootKeyName     = "root-key.pem"
)

// listFlag is a comma-separated list of names.
type listFlag []string

func (f *listFlag) String() string { return (*etcdFlag)(f).String() }
func (f *listFlag) Set(s string) error {
	return (*etcdFlag)(f).Set(s)
}

func (c *certsFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&c.out, "out", "", "directory to write (see the layout above)")
	fs.StringVar(&c.run, "run", cluster.DefaultRun, "run name, recorded in every identity")
	fs.IntVar(&c.workers, "workers", 0, "issue worker certificates for worker-1 … worker-N (the IDs ringtrain local uses)")
	fs.Var(&c.workerIDs, "worker-ids", "issue worker certificates for these worker IDs, comma-separated (each worker's --id)")
	fs.Var(&c.coordinators, "coordinators", "issue coordinator certificates for these IDs, comma-separated (each coordinator's --id)")
	fs.Var(&c.clients, "clients", "issue client certificates for these names, comma-separated (tools, operators)")
	fs.Var(&c.etcdMembers, "etcd-members", "issue etcd-server and etcd-peer certificates for these etcd member names, comma-separated;\n"+
		"each names its member and --etcd-hosts as host names or IPs, which etcd's clients and peers check")
	fs.Var(&c.etcdHosts, "etcd-hosts", "extra host names and IPs of every etcd member's certificates, comma-separated (e.g. etcd,localhost,127.0.0.1)")
	fs.DurationVar(&c.leafTTL, "leaf-ttl", pki.DefaultLeafTTL, "lifetime of the issued leaves")
	fs.BoolVar(&c.force, "force", false, "overwrite existing leaf files (re-issue them)")
	fs.BoolVar(&c.enrollToken, "enroll-token", false, "also write DIR/"+enrollTokenFile+", the bootstrap token workers enroll with (kept if present)")
	fs.BoolVar(&c.gossipKey, "gossip-key", false, "also write DIR/"+gossipKeyFile+", the run's gossip key (kept if present)")
	fs.StringVar(&c.workerOut, "worker-out", "", "copy what an enrolling worker needs (ca.pem and, when written, "+enrollTokenFile+" and "+gossipKeyFile+") to this directory")
	fs.StringVar(&c.etcdOut, "etcd-out", "", "copy the --etcd-members' etcd-server and etcd-peer directories and the --clients' (readers, for etcdctl\n"+
		"beside etcd, which holds what they read anyway) to this directory in the same layout, for the etcd containers")
	fs.StringVar(&c.rootKeyDir, "root-key-dir", "", "write a new root key to this directory ("+rootKeyName+") instead of DIR/"+pki.RootKeyFile)
}

// identities lists what to issue, checking each name.
func (c *certsFlags) identities() ([]pki.Identity, error) {
	var ids []pki.Identity
	add := func(flag string, role pki.Role, names []string) error {
		for _, n := range names {
			id := pki.Identity{Run: c.run, Role: role, ID: n}
			if err := id.Validate(); err != nil {
				return usage.Errorf("%s: %q cannot name a certificate: use letters, digits, '-', '_' or '.'", flag, n)
			}
			ids = append(ids, id)
		}
		return nil
	}
	for i := 1; i <= c.workers; i++ {
		ids = append(ids, pki.Worker(c.run, "worker-"+strconv.Itoa(i)))
	}
	for _, step := range []struct {
		flag  string
		role  pki.Role
		names []string
	}{{"--worker-ids", pki.RoleWorker, c.workerIDs}, {"--coordinators", pki.RoleCoordinator, c.coordinators}, {"--clients", pki.RoleClient, c.clients}} {
		if err := add(step.flag, step.role, step.names); err != nil {
			return nil, err
		}
	}
	return ids, nil
}

func runCerts(ctx context.Context, e *env, args []string) error {
	fs := e.newFlagSet(certsHelp)
	var c certsFlags
	c.register(fs)
	if err := usage.ParseFlags(fs, args); err != nil {
		return err
	}
	switch {
	case c.out == "":
		return usage.Errorf("--out is required: the directory to write, e.g. --out certs")
	case c.workers < 0:
		return usage.Errorf("--workers %d must not be negative", c.workers)
	case c.etcdOut != "" && len(c.etcdMembers) == 0:
		return usage.Errorf("--etcd-out %s copies the etcd members' certificates; give --etcd-members too, e.g. --etcd-members etcd", c.etcdOut)
	case c.leafTTL < time.Minute:
		return usage.Errorf("--leaf-ttl %v is too short; give at least 1m, e.g. --leaf-ttl 24h", c.leafTTL)
	}
	if err := (pki.Identity{Run: c.run, Role: pki.RoleClient, ID: "x"}).Validate(); err != nil {
		return usage.Errorf("--run %q cannot name a certificate: use letters, digits, '-', '_' or '.'", c.run)
	}
	ids, err := c.identities()
	if err != nil {
		return err
	}
	if len(ids) == 0 && len(c.etcdMembers) == 0 {
		fmt.Fprintln(e.stderr, "ringtrain certs: no --workers, --worker-ids, --coordinators, --clients or --etcd-members: writing the CA only")
	}
	files, reused, err := issueCertsRootKey(c.out, c.run, ids, pki.IssueOptions{TTL: c.leafTTL}, c.force, c.rootKeyDir)
	if err != nil {
		return err
	}
	etcdFiles, err := c.issueEtcd()
	if err != nil {
		return err
	}
	files = append(files, etcdFiles...)
	if c.etcdOut != "" {
		copies, err := c.copyEtcd()
		if err != nil {
			return err
		}
		files = append(files, copies...)
	}
	if reused {
		fmt.Fprintf(e.stderr, "ringtrain certs: reusing the CA in %s\n", c.out)
	}
	secrets, err := c.writeSecrets()
	if err != nil {
		return err
	}
	for _, f := range append(files, secrets...) {
		fmt.Fprintln(e.stdout, f.Path)
	}
	return nil
}

// writeSecrets writes the enroll token and the gossip key if asked and
// absent, and the workers' copies; it returns what it wrote.
func (c *certsFlags) writeSecrets() ([]pki.File, error) {
	var written []pki.File
	for _, s := range []struct {
		want bool
		name string
		make func() []byte
	}{
		{c.enrollToken, enrollTokenFile, func() []byte { return []byte(hex.EncodeToString(randomBytes(32)) + "\n") }},
		{c.gossipKey, gossipKeyFile, func() []byte { return []byte(hex.EncodeToString(cluster.NewGossipKey()) + "\n") }},
	} {
		p := filepath.Join(c.out, s.name)
		if _, err := os.Stat(p); !s.want || err == nil {
			continue
		}
		f := pki.File{Path: p, Data: s.make(), Mode: 0o600}
		if err := pki.WriteFiles([]pki.File{f}, false); err != nil {
			return nil, err
		}
		written = append(written, f)
	}
	if c.workerOut == "" {
		return written, nil
	}
	var copies []pki.File
	for _, name := range []string{pki.RootFile, enrollTokenFile, gossipKeyFile} {
		b, err := os.ReadFile(filepath.Join(c.out, name))
		if errors.Is(err, fs.ErrNotExist) && name != pki.RootFile {
			continue
		}
		if err != nil {
			return nil, err
		}
		mode := fs.FileMode(0o600)
		if name == pki.RootFile {
			mode = 0o644
		}
		copies = append(copies, pki.File{Path: filepath.Join(c.workerOut, name), Data: b, Mode: mode})
	}
	if err := pki.WriteFiles(copies, true); err != nil {
		return nil, err
	}
	return append(written, copies...), nil
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("certs: crypto/rand: %v", err)) // never fails on supported platforms
	}
	return b
}

// issueCertsRootKey is issueCerts with a new root key written to
// rootKeyDir instead of beside the CA (when rootKeyDir is set).
func issueCertsRootKey(dir, run string, ids []pki.Identity, opt pki.IssueOptions, force bool, rootKeyDir string) ([]pki.File, bool, error) {
	if rootKeyDir == "" {
		return issueCerts(dir, run, ids, opt, force)
	}
	return issueCertsWith(dir, run, ids, opt, force, func(f *pki.File) {
		if f.Path == filepath.Join(dir, pki.RootKeyFile) {
			f.Path = filepath.Join(rootKeyDir, rootKeyName)
		}
	})
}

// issueCerts writes (or reuses) the CA under dir and a leaf per identity,
// and returns the files written; an existing file without force is a usage
// error naming it.
func issueCerts(dir, run string, ids []pki.Identity, opt pki.IssueOptions, force bool) (written []pki.File, reused bool, err error) {
	return issueCertsWith(dir, run, ids, opt, force, func(*pki.File) {})
}

// issueCertsWith is issueCerts with each file of a new CA passed through
// place (which may move it) before writing.
func issueCertsWith(dir, run string, ids []pki.Identity, opt pki.IssueOptions, force bool, place func(*pki.File)) (written []pki.File, reused bool, err error) {
	auth, err := pki.LoadAuthorityDir(dir)
	var files []pki.File
	switch {
	case err == nil:
		reused = true
		if auth.Run != run {
			return nil, false, usage.Errorf("--out %s holds the CA of run %q, not --run %q; give --run %s or another --out", dir, auth.Run, run, auth.Run)
		}
	case errors.Is(err, fs.ErrNotExist):
		if _, serr := os.Stat(filepath.Join(dir, pki.RootFile)); serr == nil {
			return nil, false, usage.Errorf("--out %s has %s but not the intermediate's files (%s, %s); give an empty --out", dir, pki.RootFile, pki.IntermediateFile, pki.IntermediateKeyFile)
		}
		if auth, err = pki.NewAuthority(run, time.Now(), 0, 0); err != nil {
			return nil, false, err
		}
		files = auth.CAFiles(dir)
		for i := range files {
			place(&files[i])
		}
	default:
		return nil, false, usage.Errorf("--out %s: cannot load its CA: %v", dir, err)
	}
	leaves, err := auth.LeafFiles(dir, ids, opt)
	if err != nil {
		return nil, false, err
	}
	files = append(files, leaves...)
	if err := pki.WriteFiles(files, force); err != nil {
		var ex *pki.ExistsError
		if errors.As(err, &ex) {
			return nil, false, usage.Errorf("%s exists; pass --force to overwrite it, or another --out", ex.Path)
		}
		return nil, false, err
	}
	return files, reused, nil
}

// Identities of a `ringtrain local` run besides its workers: the embedded
// etcd server, the coordinator, and local's own client (it follows the run).
const (
	localEtcdID        = "local"
	localCoordinatorID = "coordinator-local"
	localClientID      = "local"
)

// localCerts issues, in dir, the CA of a `ringtrain local` run and the
// certificates of its etcd server (for 127.0.0.1 and localhost), its
// coordinator, its own client and its workers worker-1 … worker-n
// (re-issued on every start; a CA left in a --work-dir is reused).
func localCerts(dir, run string, n int) error {
	ids := []pki.Identity{pki.Coordinator(run, localCoordinatorID), {Run: run, Role: pki.RoleClient, ID: localClientID}}
	for i := range n {
		ids = append(ids, pki.Worker(run, "worker-"+strconv.Itoa(i+1)))
	}
	if _, _, err := issueCerts(dir, run, ids, pki.IssueOptions{TTL: localLeafTTL}, true); err != nil {
		return err
	}
	server := []pki.Identity{{Run: run, Role: pki.RoleEtcdServer, ID: localEtcdID}}
	_, _, err := issueCerts(dir, run, server, pki.IssueOptions{TTL: localLeafTTL,
		IPs: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}, DNSNames: []string{"localhost"}}, true)
	return err
}

// localLeafTTL outlasts any local run; the CA dies with its directory.
const localLeafTTL = 30 * 24 * time.Hour

// copyEtcd copies each --etcd-members member's etcd-server and etcd-peer
// directories, and each --clients client's, from c.out to c.etcdOut,
// overwriting; it returns the copies.
func (c *certsFlags) copyEtcd() ([]pki.File, error) {
	var ids []pki.Identity
	for _, m := range c.etcdMembers {
		ids = append(ids, pki.Identity{Run: c.run, Role: pki.RoleEtcdServer, ID: m}, pki.Identity{Run: c.run, Role: pki.RoleEtcdPeer, ID: m})
	}
	for _, n := range c.clients {
		ids = append(ids, pki.Identity{Run: c.run, Role: pki.RoleClient, ID: n})
	}
	var copies []pki.File
	for _, id := range ids {
		src, dst := pki.DirFiles(pki.LeafDir(c.out, id)), pki.DirFiles(pki.LeafDir(c.etcdOut, id))
		for _, f := range []struct {
			from, to string
			mode     fs.FileMode
		}{{src.Cert, dst.Cert, 0o644}, {src.Key, dst.Key, 0o600}, {src.CA, dst.CA, 0o644}} {
			b, err := os.ReadFile(f.from)
			if err != nil {
				return nil, err
			}
			copies = append(copies, pki.File{Path: f.to, Data: b, Mode: f.mode})
		}
	}
	return copies, pki.WriteFiles(copies, true)
}

// issueEtcd issues, with the CA now in c.out, an etcd-server and an
// etcd-peer certificate per --etcd-members name, for that name and every
// --etcd-hosts entry (etcd's clients and peers check host names).
func (c *certsFlags) issueEtcd() ([]pki.File, error) {
	var files []pki.File
	for _, m := range c.etcdMembers {
		opt := pki.IssueOptions{TTL: c.leafTTL}
		for _, h := range append([]string{m}, c.etcdHosts...) {
			if ip := net.ParseIP(h); ip != nil {
				opt.IPs = append(opt.IPs, ip)
			} else {
				opt.DNSNames = append(opt.DNSNames, h)
			}
		}
		var ids []pki.Identity
		for _, role := range []pki.Role{pki.RoleEtcdServer, pki.RoleEtcdPeer} {
			id := pki.Identity{Run: c.run, Role: role, ID: m}
			if err := id.Validate(); err != nil {
				return nil, usage.Errorf("--etcd-members: %q cannot name a certificate: use letters, digits, '-', '_' or '.'", m)
			}
			ids = append(ids, id)
		}
		more, _, err := issueCerts(c.out, c.run, ids, opt, c.force)
		if err != nil {
			return nil, err
		}
		files = append(files, more...)
	}
	return files, nil
}
