package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"go.uber.org/zap"

	"github.com/ringtrain/ringtrain/cluster"
	"github.com/ringtrain/ringtrain/coordinator"
	"github.com/ringtrain/ringtrain/internal/pki"
	"github.com/ringtrain/ringtrain/internal/usage"
	"github.com/ringtrain/ringtrain/train"
)

func init() {
	register("local", "run a whole cluster on this machine: embedded etcd, a coordinator, N worker processes", runLocal)
}

// localFlags are `ringtrain local`'s own flags, besides the training flags.
type localFlags struct {
	workers     int
	minWorkers  int
	hashEvery   int
	httpAddr    string
	peerTimeout time.Duration
	keep        bool
	workDir     string
	restart     bool
	logs        logFlags
}

func (l *localFlags) register(fs *flag.FlagSet) {
	fs.IntVar(&l.workers, "workers", 3, "worker processes to start")
	fs.IntVar(&l.minWorkers, "min-workers", 1, "below this many live workers the run waits")
	fs.IntVar(&l.hashEvery, "hash-every", 100, "compare a parameter hash across the ring every N steps (0: off)")
	fs.StringVar(&l.httpAddr, "http-addr", "", "serve the coordinator's dashboard and /metrics here, e.g. 127.0.0.1:8080")
	fs.DurationVar(&l.peerTimeout, "peer-timeout", 5*time.Second, "bound on waiting for a peer inside a collective")
	fs.BoolVar(&l.keep, "keep", false, "keep the working directory (etcd data, worker logs, step logs)")
	fs.StringVar(&l.workDir, "work-dir", "", "working directory (default: a new temporary directory)")
	fs.BoolVar(&l.restart, "restart", true, "restart a crashed worker (killed by a signal, or an exit status other than 0 and 2) with the same\n"+
		"--id, after a backoff from 0.5s doubling to 8s; a worker that exits 2 rejected its input and stays down")
	l.logs.register(fs)
}

func runLocal(ctx context.Context, e *env, args []string) error {
	fs := e.newFlagSet("Runs a local cluster: embedded etcd, a coordinator and --workers worker processes of this binary,\n" +
		"training the run given by the training flags (--batch is the global minibatch).")
	cfg := train.DefaultConfig()
	var lf localFlags
	if err := train.ParseArgs(fs, args, &cfg, lf.register); err != nil {
		return err
	}
	if lf.workers < 1 {
		return usage.Errorf("--workers %d must be at least 1", lf.workers)
	}
	spec := cluster.RunSpec{Config: cfg.Spec, MinWorkers: lf.minWorkers, HashEvery: lf.hashEvery}
	if err := spec.Validate(); err != nil {
		return err
	}
	if cfg.Batch < lf.workers {
		return usage.Errorf("--batch %d is smaller than --workers %d; every worker needs at least one example per step", cfg.Batch, lf.workers)
	}
	log, err := lf.logs.logger(e.stderr)
	if err != nil {
		return err
	}
	defer log.Sync()

	dir := lf.workDir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "ringtrain-local-"); err != nil {
			return err
		}
		if !lf.keep {
			defer os.RemoveAll(dir)
		}
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	tempCheckpoints := cfg.CheckpointDir == "" && lf.workDir == "" && !lf.keep
	if cfg.CheckpointDir == "" {
		cfg.CheckpointDir = filepath.Join(dir, "checkpoints")
	}

	ccfg := coordinator.DefaultConfig()
	// The run's CA and a certificate per process, new for every start: the
	// ring and etcd run mutual TLS, and etcd knows each process by its
	// certificate (a worker may write only its own keys).
	certsDir := filepath.Join(dir, "certs")
	if err := localCerts(certsDir, ccfg.Run, lf.workers); err != nil {
		return err
	}
	etcd, err := startLocalEtcd(ctx, filepath.Join(dir, "etcd"), certsDir, ccfg.Run, lf.workers)
	if err != nil {
		return err
	}
	defer etcd.Close()
	endpoints := etcd.Endpoints()
	log.Info("etcd started", zap.Strings("endpoints", endpoints), zap.String("dir", dir))

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	ccfg.Etcd = endpoints
	ccfg.ID = localCoordinatorID
	ccfg.TLS = localCoordinatorTLS(certsDir, ccfg.Run)
	ccfg.ListenGRPC = "127.0.0.1:0"
	ccfg.GossipBind = "127.0.0.1:0"
	ccfg.HTTPAddr = lf.httpAddr
	ccfg.Spec = spec
	ccfg.CheckpointDir = cfg.CheckpointDir
	// The run's gossip key, new for every run, read by each worker.
	gossipKeyFile := filepath.Join(dir, "gossip.key")
	if ccfg.GossipKey, err = cluster.WriteGossipKeyFile(gossipKeyFile); err != nil {
		return err
	}
	ccfg.Logger = log.Named("coordinator")
	coord, err := coordinator.New(ccfg)
	if err != nil {
		return err
	}
	coordDone := make(chan error, 1)
	go func() { coordDone <- coord.Run(ctx) }()
	defer func() {
		cancel()
		<-coordDone
	}()

	level := lf.logs.level
	if level == "" {
		level = "info"
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	procs := newProcGroup(ctx, self, lf.restart, e.stderr)
	defer procs.stop(10 * time.Second)
	for i := 1; i <= lf.workers; i++ {
		id := "worker-" + strconv.Itoa(i)
		args := []string{"worker", "--etcd", endpoints[0], "--run", ccfg.Run, "--id", id,
			"--listen", "127.0.0.1:0", "--gossip-listen", "127.0.0.1:0", "--http-addr", "",
			"--checkpoint-dir", cfg.CheckpointDir, "--data", cfg.Data, "--init", cfg.Init, "--threads", strconv.Itoa(cfg.Threads),
			"--peer-timeout", lf.peerTimeout.String(), "--gossip-key-file", gossipKeyFile,
			"--tls-dir", pki.LeafDir(certsDir, pki.Worker(ccfg.Run, id)),
			"--log-level", level, "--step-log", filepath.Join(dir, id+".steps.jsonl")}
		if err := procs.start(id, args, filepath.Join(dir, id+".log")); err != nil {
			return err
		}
	}
	if lf.httpAddr != "" {
		fmt.Fprintf(e.stderr, "dashboard: http://%s/\n", lf.httpAddr)
	}

	cli, err := localEtcdClient(endpoints, certsDir, pki.Identity{Run: ccfg.Run, Role: pki.RoleClient, ID: localClientID})
	if err != nil {
		return err
	}
	defer cli.Close()
	run := cluster.NewClient(cli, ccfg.Run, log)
	start := time.Now()
	sum, err := follow(ctx, e, run, procs, coordDone, log)
	if err != nil {
		if lf.keep || lf.workDir != "" {
			fmt.Fprintf(e.stderr, "logs kept in %s\n", dir)
		}
		return err
	}
	// The whole run as this command saw it, start-up included.
	sum.Seconds = roundTo(time.Since(start).Seconds(), 3)
	if tempCheckpoints {
		// Removed with the working directory on return.
		sum.Checkpoint = ""
		fmt.Fprintln(e.stderr, "checkpoints were temporary; pass --checkpoint-dir DIR (or --keep) to keep them")
	}
	return json.NewEncoder(e.stdout).Encode(sum)
}

// follow shows the run's progress until it is done, every worker has
// exited, or ctx ends.
func follow(ctx context.Context, e *env, run *cluster.Client, procs *procGroup, coordDone <-chan error, log *zap.Logger) (train.Summary, error) {
	var bar *train.Progress
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	done := run.WatchDone(ctx)
	var last cluster.Progress
	for {
		select {
		case <-ctx.Done():
			return train.Summary{}, ctx.Err()
		case err := <-coordDone:
			return train.Summary{}, fmt.Errorf("coordinator stopped: %v", err)
		case s, ok := <-done:
			if !ok {
				return train.Summary{}, ctx.Err()
			}
			if bar != nil {
				bar.Update(s.Step, s.TrainLoss)
				bar.Finish()
			}
			return s, nil
		case <-tick.C:
			if procs.running() == 0 {
				// The done key may have landed just before the last exit.
				if s, ok, err := run.Done(ctx); err == nil && ok {
					return s, nil
				}
				if line := procs.rejection(); line != "" {
					// Every worker is down and one said why: its one clear line.
					return train.Summary{}, usage.New(line)
				}
				return train.Summary{}, errors.New("every worker exited before the run finished; see the worker logs")
			}
			p, ok, err := run.Progress(ctx)
			if err != nil || !ok || p.Step == last.Step {
				continue
			}
			last = p
			if isTerminal(e.stderr) {
				if bar == nil {
					bar = train.NewProgress(e.stderr, p.TotalSteps)
				}
				bar.Update(p.Step, p.Loss)
			} else {
				log.Info("progress", zap.Uint64("gen", p.Gen), zap.Int64("step", p.Step), zap.Int64("total", p.TotalSteps),
					zap.Int("workers", p.Workers), zap.Float64("loss", p.Loss), zap.Float64("samples_per_sec", p.SamplesPerSec))
			}
		}
	}
}

// listen opens a TCP listener, naming the flag value on error.
func listen(addr string) (net.Listener, error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, usage.Errorf("listen on %q: %v; pick a free host:port", addr, err)
	}
	return lis, nil
}
