package main

import (
	"context"
	"flag"

	"github.com/ringtrain/ringtrain/coordinator"
	"github.com/ringtrain/ringtrain/internal/pki"
	"github.com/ringtrain/ringtrain/train"
)

func init() {
	register("coordinator", "own a run's membership: form the ring in generations (leader elected in etcd)", runCoordinator)
}

func runCoordinator(ctx context.Context, e *env, args []string) error {
	fs := e.newFlagSet("Coordinates a run: writes its spec to etcd (if absent), campaigns for leadership and, while\n" +
		"leading, publishes a new ring generation whenever workers join, leave or fail. Training flags\n" +
		"set the run spec; they are ignored when the run already has one.")
	cfg := coordinator.DefaultConfig()
	tc := train.Config{Spec: cfg.Spec.Config, Local: train.DefaultConfig().Local}
	var lf logFlags
	extra := func(fs *flag.FlagSet) {
		fs.Var((*etcdFlag)(&cfg.Etcd), "etcd", "etcd endpoints, comma-separated (default 127.0.0.1:2379)")
		fs.StringVar(&cfg.Run, "run", cfg.Run, "run name (etcd prefix)")
		fs.StringVar(&cfg.ID, "id", cfg.ID, "coordinator ID (default: hostname)")
		fs.StringVar(&cfg.ListenGRPC, "listen", cfg.ListenGRPC, "gRPC address, TLS only: worker enrollment (with --ca-dir) and health for holders of the run's certificates (empty: off)")
		fs.StringVar(&cfg.Advertise, "advertise", cfg.Advertise, "the --listen address workers dial, HOST:PORT (default: the bound one, with the hostname for a wildcard host)")
		fs.StringVar(&cfg.HealthAddr, "health-addr", cfg.HealthAddr, "plaintext gRPC health service for probes without a certificate, and nothing else (empty: off; in a container e.g. :7001)")
		registerTLSFlags(fs, &cfg.TLS, pki.RoleCoordinator)
		fs.StringVar(&cfg.CADir, "ca-dir", cfg.CADir, "enroll workers while leading, signing with the run's intermediate CA in this directory: ca.pem, ca/intermediate.pem,\n"+
			"ca/intermediate-key.pem as 'ringtrain certs --out DIR' writes them (the root's key is never needed: keep it elsewhere);\n"+
			"with https:// --etcd it also provisions etcd's users (itself, the workers it enrolls) and turns etcd's auth on")
		fs.Var((*etcdFlag)(&cfg.EtcdClients), "etcd-clients", "names of client certificates ('ringtrain certs --clients') that may read the run in etcd (ringtrain status,\n"+
			"ringtrain chaos), comma-separated: with --ca-dir and https:// --etcd, the coordinator adds their etcd users at start")
		fs.StringVar(&cfg.EnrollTokenFile, "enroll-token-file", cfg.EnrollTokenFile, "file with the run's bootstrap token, which a worker's first enrollment carries ('ringtrain certs --enroll-token' writes one)")
		fs.DurationVar(&cfg.EnrollTTL, "enroll-ttl", cfg.EnrollTTL, "lifetime of enrolled workers' certificates (they renew at half-life)")
		fs.StringVar(&cfg.GossipBind, "gossip-listen", cfg.GossipBind, "memberlist listen address")
		fs.StringVar(&cfg.GossipAdvertise, "gossip-advertise", cfg.GossipAdvertise, "memberlist address peers dial, HOST:PORT (default: the bound one)")
		fs.StringVar(&cfg.HTTPAddr, "http-addr", cfg.HTTPAddr, "serve the dashboard, /metrics and /healthz here, read-only (empty: off; in a container e.g. :8080)")
		fs.StringVar(&cfg.HTTPTokenFile, "http-token-file", cfg.HTTPTokenFile, httpTokenUsage)
		fs.IntVar(&cfg.Spec.MinWorkers, "min-workers", cfg.Spec.MinWorkers, "below this many live workers the run waits")
		fs.IntVar(&cfg.Spec.MaxWorkers, "max-workers", cfg.Spec.MaxWorkers, "cap on the ring size; further workers stand by (0: no cap)")
		fs.IntVar(&cfg.Spec.HashEvery, "hash-every", cfg.Spec.HashEvery, "compare a parameter hash across the ring every N steps (0: never)")
		fs.DurationVar(&cfg.LeaseTTL, "lease-ttl", cfg.LeaseTTL, "etcd lease of the registration and election: how long a crashed leader holds on")
		fs.StringVar(&cfg.GossipKeyFile, "gossip-key-file", cfg.GossipKeyFile, gossipKeyUsage)
		fs.BoolVar(&cfg.Insecure, "insecure", cfg.Insecure, insecureUsage)
		lf.register(fs)
	}
	if err := train.ParseArgs(fs, args, &tc, extra); err != nil {
		return err
	}
	cfg.Spec.Config = tc.Spec
	cfg.CheckpointDir = tc.CheckpointDir // where the dashboard finds the workers' checkpoints
	machineLocal := tc.Data != train.DefaultConfig().Data || tc.Init != "" || tc.Threads != train.DefaultConfig().Threads
	log, err := lf.logger(e.stderr)
	if err != nil {
		return err
	}
	defer log.Sync()
	cfg.Logger = log.Named("coordinator")
	if machineLocal {
		log.Warn("--data, --init and --threads are each worker's own flags; the run spec does not carry them")
	}
	c, err := coordinator.New(cfg)
	if err != nil {
		return err
	}
	return c.Run(ctx)
}
