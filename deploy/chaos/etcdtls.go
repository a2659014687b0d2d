package chaos

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/ringtrain/ringtrain/cluster"
	"github.com/ringtrain/ringtrain/internal/pki"
)

// The compose etcd serves mutual TLS only, with auth on (docker-compose.yml),
// and every project makes its own CA in its certs volume, which only the
// coordinators mount. So chaos follows the run with the client certificate
// --etcd-client names (`ringtrain certs --clients`, a reader the
// coordinators' --etcd-clients provision), copied out of that volume through
// a coordinator container; a certificate given on the host could not be of
// the project's CA.

// certsService is the service whose container chaos copies certificates
// from: it mounts the certs volume (as coordinator-2 does).
const certsService = "coordinator-1"

// copyCerts copies directory p of the certs volume into a new temporary
// directory (flat: its regular files by name), which the caller removes.
func (r *chaosRun) copyCerts(ctx context.Context, p string) (string, error) {
	cs, err := r.containers(ctx, certsService)
	if err != nil {
		return "", err
	}
	if len(cs) == 0 {
		return "", fmt.Errorf("no %s container to copy %s from", certsService, p)
	}
	cmd := exec.CommandContext(ctx, "docker", "cp", cs[0].ID+":"+p, "-")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("docker cp %s:%s: %v: %s", cs[0].label(), p, err, strings.TrimSpace(errb.String()))
	}
	dir, err := os.MkdirTemp("", "ringtrain-chaos-certs-")
	if err != nil {
		return "", err
	}
	tr := tar.NewReader(&out)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return dir, nil
		}
		if err != nil {
			os.RemoveAll(dir)
			return "", fmt.Errorf("docker cp %s:%s: %w", cs[0].label(), p, err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		b, err := io.ReadAll(tr)
		if err == nil {
			err = os.WriteFile(filepath.Join(dir, path.Base(h.Name)), b, 0o600)
		}
		if err != nil {
			os.RemoveAll(dir)
			return "", err
		}
	}
}

// etcdClient is a client of the project's etcd at endpoint with the
// --etcd-client certificate; cleanup closes it and removes the copy.
func (r *chaosRun) etcdClient(ctx context.Context, endpoint string) (cli *clientv3.Client, cleanup func(), err error) {
	dir, err := r.copyCerts(ctx, "/certs/"+string(pki.RoleClient)+"/"+r.o.etcdClient)
	if err != nil {
		return nil, nil, fmt.Errorf("--etcd-client %s: %w", r.o.etcdClient, err)
	}
	src, err := pki.NewSource(pki.DirFiles(dir))
	if err == nil {
		var cfg clientv3.Config
		cfg, err = cluster.SecureEtcd(cluster.EtcdClientConfig([]string{endpoint}, zap.NewNop()), src, "--etcd-client")
		if err == nil {
			cli, err = clientv3.New(cfg)
		}
	}
	if err != nil {
		os.RemoveAll(dir)
		return nil, nil, fmt.Errorf("etcd client: %w", err)
	}
	return cli, func() { cli.Close(); os.RemoveAll(dir) }, nil
}

// checkEtcdLocked checks that the project's etcd refuses what the
// compose file promises it refuses: a plaintext client, a TLS client
// without a certificate, and a worker's certificate (of the project's CA,
// for worker, whose etcd user exists) writing the generation.
func (r *chaosRun) checkEtcdLocked(ctx context.Context, port int, worker string) error {
	var errs []error
	try := func(what string, cfg clientv3.Config) {
		cfg.DialTimeout = 0
		cli, err := clientv3.New(cfg)
		if err != nil {
			return // refused before any request: what we want
		}
		defer cli.Close()
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		if _, err := cli.Get(rctx, cluster.Key(r.o.run, cluster.KeyGeneration)); err == nil {
			errs = append(errs, fmt.Errorf("etcd answered %s", what))
		}
	}
	try("a plaintext client", cluster.EtcdClientConfig([]string{fmt.Sprintf("http://127.0.0.1:%d", port)}, zap.NewNop()))

	ca, err := r.copyCerts(ctx, "/certs/ca")
	if err != nil {
		return err
	}
	defer os.RemoveAll(ca)
	root, err := r.copyCerts(ctx, "/certs/"+pki.RootFile)
	if err != nil {
		return err
	}
	defer os.RemoveAll(root)
	rootPEM, err := os.ReadFile(filepath.Join(root, pki.RootFile))
	if err != nil {
		return err
	}
	trust, err := pki.TrustConfig(rootPEM)
	if err != nil {
		return err
	}
	https := cluster.EtcdClientConfig([]string{fmt.Sprintf("https://127.0.0.1:%d", port)}, zap.NewNop())
	https.TLS = trust
	try("a TLS client without a certificate", https)

	// The worker's certificate, issued by the project's intermediate as
	// the leader issues it at enrollment.
	var pem [2][]byte
	for i, name := range []string{path.Base(pki.IntermediateFile), path.Base(pki.IntermediateKeyFile)} {
		if pem[i], err = os.ReadFile(filepath.Join(ca, name)); err != nil {
			return err
		}
	}
	auth, err := pki.LoadAuthority(rootPEM, pem[0], pem[1])
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "ringtrain-chaos-worker-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	files, err := auth.LeafFiles(dir, []pki.Identity{pki.Worker(r.o.run, worker)}, pki.IssueOptions{TTL: 10 * time.Minute})
	if err == nil {
		err = pki.WriteFiles(files, true)
	}
	if err != nil {
		return err
	}
	src, err := pki.NewSource(pki.DirFiles(pki.LeafDir(dir, pki.Worker(r.o.run, worker))))
	if err != nil {
		return err
	}
	wcfg, err := cluster.SecureEtcd(cluster.EtcdClientConfig(https.Endpoints, zap.NewNop()), src, "worker")
	if err != nil {
		return err
	}
	wcli, err := clientv3.New(wcfg)
	if err != nil {
		return err
	}
	defer wcli.Close()
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	key := cluster.Key(r.o.run, cluster.KeyGeneration)
	if _, err := wcli.Get(rctx, key); err != nil {
		errs = append(errs, fmt.Errorf("worker %s's certificate cannot read the run (%v): its etcd user is missing", worker, err))
	}
	if _, err := wcli.Put(rctx, key, cluster.Marshal(cluster.Generation{Gen: 1 << 40})); !errors.Is(err, rpctypes.ErrPermissionDenied) {
		errs = append(errs, fmt.Errorf("worker %s's certificate writing the generation: %v, want permission denied", worker, err))
	}
	return errors.Join(errs...)
}
