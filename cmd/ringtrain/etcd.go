package main

import (
	"context"
	"fmt"

	"go.uber.org/zap"

	"github.com/ringtrain/ringtrain/cluster"
	"github.com/ringtrain/ringtrain/internal/usage"
)

func init() {
	register("etcd", "run an etcd member (embedded etcd server) for the coordinators and workers", runEtcd)
}

func runEtcd(ctx context.Context, e *env, args []string) error {
	fs := e.newFlagSet("Runs one etcd member until interrupted; flags as etcd's own. For a single member the defaults suffice.")
	var c cluster.EtcdConfig
	fs.StringVar(&c.Name, "name", "default", "member name")
	fs.StringVar(&c.Dir, "data-dir", "", "data directory (default: NAME.etcd)")
	fs.StringVar(&c.ListenClientURLs, "listen-client-urls", "http://127.0.0.1:2379", "URLs to serve clients on, comma-separated")
	fs.StringVar(&c.AdvertiseClientURLs, "advertise-client-urls", "", "client URLs to advertise (default: --listen-client-urls)")
	fs.StringVar(&c.ListenPeerURLs, "listen-peer-urls", "http://127.0.0.1:2380", "URLs to serve peers on, comma-separated")
	fs.StringVar(&c.AdvertisePeerURLs, "initial-advertise-peer-urls", "", "peer URLs to advertise (default: --listen-peer-urls)")
	fs.StringVar(&c.InitialCluster, "initial-cluster", "", "NAME=PEER_URL,... of the initial members (default: this member alone)")
	fs.StringVar(&c.ClusterState, "initial-cluster-state", "new", "new or existing")
	fs.StringVar(&c.ClusterToken, "initial-cluster-token", "ringtrain", "token that tells clusters apart")
	var lf logFlags
	lf.register(fs)
	if err := usage.ParseFlags(fs, args); err != nil {
		return err
	}
	if c.Dir == "" {
		c.Dir = c.Name + ".etcd"
	}
	if c.ClusterState != "new" && c.ClusterState != "existing" {
		return usage.Errorf("--initial-cluster-state %q: use new or existing", c.ClusterState)
	}
	log, err := lf.logger(e.stderr)
	if err != nil {
		return err
	}
	defer log.Sync()
	// etcd's own logs are chatty: they pass at warn unless --log-level debug.
	elog := log.Named("etcd")
	if lf.level != "debug" {
		elog = elog.WithOptions(zap.IncreaseLevel(zap.WarnLevel))
	}
	c.Logger = elog
	etcd, err := cluster.StartEtcd(c)
	if err != nil {
		return err
	}
	defer etcd.Close()
	log.Info("etcd serving", zap.String("name", c.Name), zap.Strings("clients", etcd.Endpoints()), zap.String("data_dir", c.Dir))
	select {
	case <-ctx.Done():
		log.Info("stopping etcd")
		return ctx.Err()
	case err := <-etcd.Err():
		return fmt.Errorf("etcd: %w", err)
	}
}
