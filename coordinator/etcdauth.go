package coordinator

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/ringtrain/ringtrain/cluster"
	"github.com/ringtrain/ringtrain/internal/pki"
)

// adminTTL is the lifetime of the AdminCoordinator certificate a
// coordinator mints to provision etcd; it is dropped once provisioned.
const adminTTL = 10 * time.Minute

// provisionEtcd gives a TLS etcd its users and turns auth on
// (cluster.Bootstrap), retrying until etcd answers or ctx ends: this
// coordinator's user and --etcd-clients' are added through a certificate of
// cluster.AdminCoordinator minted from the intermediate, since once auth is
// on only a root-role user may add them. An etcd whose auth was turned on
// without that user (provisioned by other means) is provisioned through own,
// this coordinator's client, which then must already hold root.
func (c *Coordinator) provisionEtcd(ctx context.Context, ecfg clientv3.Config, own *clientv3.Client) error {
	dir, err := os.MkdirTemp("", "ringtrain-etcd-admin-")
	if err != nil {
		return fmt.Errorf("coordinator: %w", err)
	}
	defer os.RemoveAll(dir)
	if err := writeLeaf(c.sec.issuer, dir, pki.Coordinator(c.cfg.Run, cluster.AdminCoordinator), adminTTL); err != nil {
		return err
	}
	src, err := pki.NewSource(pki.DirFiles(dir))
	if err != nil {
		return fmt.Errorf("coordinator: %w", err)
	}
	ecfg.TLS = src.ClientConfig()
	ecfg.DialTimeout = 0 // each attempt below is bounded instead
	admin, err := clientv3.New(ecfg)
	if err != nil {
		return fmt.Errorf("coordinator: etcd %v as %s: %w", c.cfg.Etcd, cluster.CoordinatorUser(cluster.AdminCoordinator), err)
	}
	defer admin.Close()
	bootstrap := func(cli *clientv3.Client) error {
		rctx, cancel := context.WithTimeout(ctx, cluster.DefaultRequestTimeout)
		defer cancel()
		return cluster.Bootstrap(rctx, cli, c.cfg.Run, []string{c.cfg.ID}, c.cfg.EtcdClients)
	}
	_, err = retry(ctx, c.log, "provision etcd's users and turn its auth on", func() (struct{}, error) {
		aerr := bootstrap(admin)
		if aerr == nil {
			return struct{}{}, nil
		}
		if oerr := bootstrap(own); oerr != nil {
			return struct{}{}, errors.Join(aerr, fmt.Errorf("as %s: %w", cluster.CoordinatorUser(c.cfg.ID), oerr))
		}
		return struct{}{}, nil
	})
	if err == nil {
		c.log.Info("etcd provisioned: auth on, users from certificates", zap.Strings("clients", c.cfg.EtcdClients))
	}
	return err
}

// provisionWorker is the enrollment's Provision: with a TLS etcd, an
// enrolled worker's user and role (cluster.EnsureWorkerUser); nil with a
// plaintext one, which has no users.
func (c *Coordinator) provisionWorker(client *cluster.Client) func(ctx context.Context, id string) error {
	if !cluster.EtcdWantsTLS(c.cfg.Etcd) {
		return nil
	}
	return func(ctx context.Context, id string) error {
		ctx, cancel := context.WithTimeout(ctx, cluster.DefaultRequestTimeout)
		defer cancel()
		return cluster.EnsureWorkerUser(ctx, client.Etcd(), c.cfg.Run, id)
	}
}
