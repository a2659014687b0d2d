package main

import (
	"context"
	"flag"
	"net/http"
	"strings"
	"time"

	"github.com/ringtrain/ringtrain/internal/pki"
	"github.com/ringtrain/ringtrain/internal/usage"
	"github.com/ringtrain/ringtrain/worker"
)

func init() {
	register("worker", "join a run as a data-parallel worker", runWorker)
}

// gossipKeyUsage and insecureUsage are the help of the flags every
// cluster role shares.
const (
	gossipKeyUsage = "file with the run's gossip key, the same for every coordinator and worker: 32 random bytes, or the hex or base64\n" +
		"of a 16-, 24- or 32-byte key (e.g. made by: openssl rand -hex 32 > gossip.key); gossip without it is ignored"
	insecureUsage  = "run without the run's secrets (plain gossip; a worker's ring in plaintext, unauthenticated); only on a trusted network"
	httpTokenUsage = "file with a token every HTTP request but /healthz must carry as \"Authorization: Bearer TOKEN\"\n" +
		"(at least 16 characters, e.g. made by: openssl rand -hex 32 > http.token); /healthz without it says only that the process is up"
)

// etcdFlag parses a comma-separated endpoint list.
type etcdFlag []string

func (f *etcdFlag) String() string { return strings.Join(*f, ",") }
func (f *etcdFlag) Set(s string) error {
	*f = nil
	for _, e := range strings.Split(s, ",") {
		if e = strings.TrimSpace(e); e != "" {
			*f = append(*f, e)
		}
	}
	return nil
}

func registerWorkerFlags(fs *flag.FlagSet, c *worker.Config) {
	fs.Var((*etcdFlag)(&c.Etcd), "etcd", "etcd endpoints, comma-separated (e.g. http://127.0.0.1:2379)")
	fs.StringVar(&c.Run, "run", c.Run, "run name (etcd prefix)")
	fs.StringVar(&c.ID, "id", c.ID, "stable worker name (default: hostname)")
	fs.StringVar(&c.Listen, "listen", c.Listen, "gRPC listen address of the ring (mutual TLS unless --insecure; probes: --health-addr)")
	fs.StringVar(&c.Advertise, "advertise", c.Advertise, "address peers dial, HOST:PORT (default: from --listen, or hostname:port)")
	fs.StringVar(&c.GossipListen, "gossip-listen", c.GossipListen, "memberlist listen address")
	fs.StringVar(&c.GossipAdvertise, "gossip-advertise", c.GossipAdvertise, "memberlist address peers dial (default: the --advertise host)")
	fs.StringVar(&c.HTTPAddr, "http-addr", c.HTTPAddr, "serve /metrics and /healthz here, read-only (empty: off; in a container e.g. :9090)")
	fs.StringVar(&c.HTTPTokenFile, "http-token-file", c.HTTPTokenFile, httpTokenUsage)
	fs.StringVar(&c.CheckpointDir, "checkpoint-dir", c.CheckpointDir, "checkpoint root shared by the workers (a volume; empty: no checkpoints)")
	fs.StringVar(&c.Data, "data", c.Data, "training data on this machine: mnist, a directory of MNIST IDX files, or csv:TRAIN.csv,TEST.csv (default mnist)")
	fs.StringVar(&c.Init, "init", c.Init, "model.safetensors or checkpoint directory to start from when there is no checkpoint")
	fs.IntVar(&c.Threads, "threads", c.Threads, "BLAS threads (0: 1)")
	fs.DurationVar(&c.PeerTimeout, "peer-timeout", c.PeerTimeout, "bound on waiting for a peer inside a collective")
	fs.DurationVar(&c.LeaseTTL, "lease-ttl", c.LeaseTTL, "etcd registration lease")
	fs.BoolVar(&c.FastGossip, "fast-gossip", c.FastGossip, "gossip timings for a LAN (failure detected in about a second)")
	fs.StringVar(&c.StepLog, "step-log", c.StepLog, "append one JSON line per applied step to this file")
	fs.StringVar(&c.GossipKeyFile, "gossip-key-file", c.GossipKeyFile, gossipKeyUsage)
	fs.BoolVar(&c.Insecure, "insecure", c.Insecure, insecureUsage)
	registerTLSFlags(fs, &c.TLS, pki.RoleWorker)
	fs.StringVar(&c.EnrollTokenFile, "enroll-token-file", c.EnrollTokenFile, "enroll at start for a short-lived certificate, renewed at half-life, with the run's bootstrap token in this file\n"+
		"(and --tls-ca, no certificate; 'ringtrain certs --enroll-token' writes it)")
	fs.Var((*etcdFlag)(&c.EnrollAddrs), "enroll-addr", "coordinators' gRPC addresses to enroll at, comma-separated, asked in turn until the leader answers\n"+
		"(default: the leader's address from etcd, which needs an etcd readable without a certificate)")
	fs.StringVar(&c.HealthAddr, "health-addr", c.HealthAddr, "plaintext gRPC health service for probes without a certificate, and nothing else (empty: off; in a container e.g. :7071)")
}

func runWorker(ctx context.Context, e *env, args []string) error {
	fs := e.newFlagSet("Joins a run: trains its shard of every global batch and reduces gradients on the ring.")
	cfg := worker.DefaultConfig()
	var lf logFlags
	registerWorkerFlags(fs, &cfg)
	lf.register(fs)
	if err := usage.ParseFlags(fs, args); err != nil {
		return err
	}
	log, err := lf.logger(e.stderr)
	if err != nil {
		return err
	}
	defer log.Sync()
	cfg.Logger = log.Named("worker")
	w, err := worker.New(cfg)
	if err != nil {
		return err
	}
	if cfg.HTTPAddr != "" {
		stop, err := serveHTTP(cfg.HTTPAddr, w.Handler())
		if err != nil {
			return err
		}
		defer stop()
	}
	return w.Run(ctx)
}

// serveHTTP serves h on addr until stop is called.
func serveHTTP(addr string, h http.Handler) (stop func(), err error) {
	srv := &http.Server{Addr: addr, Handler: h, ReadHeaderTimeout: 5 * time.Second}
	lis, err := listen(addr)
	if err != nil {
		return nil, err
	}
	go srv.Serve(lis)
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	}, nil
}
