package main

import (
	"context"
	"fmt"
	"strconv"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/ringtrain/ringtrain/cluster"
	"github.com/ringtrain/ringtrain/internal/pki"
)

// startLocalEtcd starts `ringtrain local`'s embedded etcd as a cluster runs
// it: mutual TLS 1.3 with the run's certificates in certsDir (localCerts),
// an etcd user per certificate — the coordinator root, each worker allowed
// to write only its own keys, local's client read-only — and auth on.
func startLocalEtcd(ctx context.Context, dir, certsDir, run string, workers int) (*cluster.Etcd, error) {
	etcd, err := cluster.StartEtcd(cluster.EtcdConfig{Name: "local", Dir: dir, Fast: true,
		ListenClientURLs: "https://127.0.0.1:0", ListenPeerURLs: "http://127.0.0.1:0",
		TLS: pki.DirFiles(pki.LeafDir(certsDir, pki.Identity{Run: run, Role: pki.RoleEtcdServer, ID: localEtcdID}))})
	if err != nil {
		return nil, err
	}
	if err := provisionLocalEtcd(ctx, etcd.Endpoints(), certsDir, run, workers); err != nil {
		etcd.Close()
		return nil, err
	}
	return etcd, nil
}

// provisionLocalEtcd creates the run's etcd users and roles, as the
// coordinator (root), and enables auth. A --work-dir's etcd that already
// has auth on is provisioned again as root, idempotently (more workers).
func provisionLocalEtcd(ctx context.Context, endpoints []string, certsDir, run string, workers int) error {
	cli, err := localEtcdClient(endpoints, certsDir, pki.Coordinator(run, localCoordinatorID))
	if err != nil {
		return err
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(ctx, cluster.DefaultRequestTimeout)
	defer cancel()
	if err := cluster.EnsureCoordinatorUser(ctx, cli, localCoordinatorID); err != nil {
		return err
	}
	if err := cluster.EnsureClientUser(ctx, cli, run, localClientID); err != nil {
		return err
	}
	for i := 1; i <= workers; i++ {
		if err := cluster.EnsureWorkerUser(ctx, cli, run, "worker-"+strconv.Itoa(i)); err != nil {
			return err
		}
	}
	return cluster.EnableAuth(ctx, cli)
}

// localEtcdClient is an etcd client with id's certificate from certsDir.
func localEtcdClient(endpoints []string, certsDir string, id pki.Identity) (*clientv3.Client, error) {
	src, err := pki.NewSource(pki.DirFiles(pki.LeafDir(certsDir, id)))
	if err != nil {
		return nil, err
	}
	cfg, err := cluster.SecureEtcd(cluster.EtcdClientConfig(endpoints, zap.NewNop()), src, "--tls-dir")
	if err != nil {
		return nil, err
	}
	cli, err := clientv3.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("etcd %v as %s: %w", endpoints, id, err)
	}
	return cli, nil
}

// localCoordinatorTLS are the coordinator's certificate files of a local run.
func localCoordinatorTLS(certsDir, run string) pki.Files {
	return pki.DirFiles(pki.LeafDir(certsDir, pki.Coordinator(run, localCoordinatorID)))
}
