package main

import (
	"bufio"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ringtrain/ringtrain/allreduce"
	"github.com/ringtrain/ringtrain/dataset"
	"github.com/ringtrain/ringtrain/internal/pki"
	"github.com/ringtrain/ringtrain/internal/usage"
	"github.com/ringtrain/ringtrain/nn"
	"github.com/ringtrain/ringtrain/train"
)

func init() {
	register("bench", "benchmarks: `bench train` (the reference MLP), `bench allreduce` (the ring), `bench wire` (its TCP ceiling) and `bench recovery` (kill -9 to training again)", runBench)
	register("bench-rank", "one rank of a benchmark (internal: started by `ringtrain bench`)", runBenchRank)
}

// benchJob is what the parent hands every rank process on stdin.
type benchJob struct {
	Kind    string   `json:"kind"` // train, allreduce or wire
	Rank    int      `json:"rank"`
	Members []string `json:"members"`

	Layers      string    `json:"layers,omitempty"`
	GlobalBatch int       `json:"global_batch,omitempty"`
	Steps       int       `json:"steps,omitempty"`
	Warmup      int       `json:"warmup,omitempty"`
	Threads     int       `json:"threads,omitempty"`
	LR          float64   `json:"lr,omitempty"`
	Seed        uint64    `json:"seed,omitempty"`
	Exact       bool      `json:"exact,omitempty"`
	MicroBatch  int       `json:"micro_batch,omitempty"`
	BucketMiB   float64   `json:"bucket_mib,omitempty"`
	SizesMiB    []float64 `json:"sizes_mib,omitempty"`
	Iters       int       `json:"iters,omitempty"`
	// TLSDir, when set, holds an ephemeral CA's certificate per rank
	// (benchTLSDir): the ring then speaks mutual TLS as the product's.
	TLSDir string `json:"tls_dir,omitempty"`
}

func runBench(ctx context.Context, e *env, args []string) error {
	if len(args) > 0 && args[0] == "recovery" {
		e.name += " recovery"
		return runBenchRecovery(ctx, e, args[1:])
	}
	if len(args) == 0 || (args[0] != "train" && args[0] != "allreduce" && args[0] != "wire") {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
			fmt.Fprintln(e.stdout, "Usage: ringtrain bench train|allreduce|wire|recovery [flags]")
			return nil
		}
		return usage.New("bench needs a kind: `ringtrain bench train`, `ringtrain bench allreduce`, `ringtrain bench wire` or `ringtrain bench recovery`")
	}
	kind := args[0]
	e.name += " " + kind
	fs := e.newFlagSet(map[string]string{
		"train":     "Times data-parallel training of a ReLU MLP on fixed random MNIST-shaped data (the fields of torch_ddp_mlp.py).",
		"allreduce": "Times the ring all-reduce between real processes on loopback (the fields of torch_allreduce.py).",
		"wire": "Times the all-reduce's ceiling: the same processes in a ring stream the bytes each rank sends in a ring\n" +
			"all-reduce, 2(N-1)/N of each size, over bare TCP on loopback (no gRPC, no arithmetic), same fields.",
	}[kind])
	job := benchJob{Kind: kind}
	workers := fs.Int("workers", 2, "rank processes (train: 1 runs in this process)")
	tlsOn := fs.Bool("tls", false, "the ranks speak mutual TLS, as the product's ring, with certificates from an ephemeral CA made for the run")
	if kind == "train" {
		fs.StringVar(&job.Layers, "layers", "784-512-512-10", "layer sizes")
		fs.IntVar(&job.GlobalBatch, "global-batch", 256, "global minibatch, split across workers")
		fs.IntVar(&job.Steps, "steps", 100, "timed steps")
		fs.IntVar(&job.Warmup, "warmup", 10, "untimed steps first")
		fs.IntVar(&job.Threads, "threads", 0, "BLAS threads per worker (0: cores / workers, at least 1)")
		fs.Float64Var(&job.LR, "lr", 0.05, "learning rate (SGD, momentum 0.9)")
		fs.Uint64Var(&job.Seed, "seed", 1, "seed")
		fs.BoolVar(&job.Exact, "exact", true, "exact training (micro-shards summed exactly), as the product's default; false: the float32 step")
		fs.IntVar(&job.MicroBatch, "micro-batch", train.DefaultMicroBatch, "micro-shard size of exact training (the product's default)")
		fs.Float64Var(&job.BucketMiB, "bucket-mib", train.DefaultBucketMiB, "gradient bucket size (MiB) of the all-reduce overlapped with backward; 0: one all-reduce after backward")
	} else {
		sizes := fs.String("sizes-mib", "1,4,16,64", "buffer sizes in MiB, comma-separated")
		fs.IntVar(&job.Iters, "iters", 20, "timed all-reduces per size")
		fs.IntVar(&job.Warmup, "warmup", 3, "untimed all-reduces first")
		if err := usage.ParseFlags(fs, args[1:]); err != nil {
			return err
		}
		if kind == "wire" && *workers < 2 {
			return usage.Errorf("--workers %d: a ring needs at least 2; use --workers 2", *workers)
		}
		if kind == "wire" && *tlsOn {
			return usage.Errorf("--tls: bench wire measures bare TCP; use bench allreduce --tls")
		}
		for _, s := range strings.Split(*sizes, ",") {
			v, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
			if err != nil || v < 0 {
				return usage.Errorf("--sizes-mib %q: %q is not a size in MiB, e.g. 1,4,16,64", *sizes, s)
			}
			job.SizesMiB = append(job.SizesMiB, v)
		}
		return benchProcs(ctx, e, job, *workers, *tlsOn)
	}
	if err := usage.ParseFlags(fs, args[1:]); err != nil {
		return err
	}
	if *workers < 1 {
		return usage.Errorf("--workers %d must be at least 1", *workers)
	}
	if job.GlobalBatch%*workers != 0 {
		return usage.Errorf("--global-batch %d must be divisible by --workers %d", job.GlobalBatch, *workers)
	}
	if _, err := nn.ParseLayers(job.Layers); err != nil {
		return usage.Errorf("--layers %q: %v", job.Layers, err)
	}
	if job.Steps < 1 {
		return usage.Errorf("--steps %d must be at least 1", job.Steps)
	}
	if job.Threads <= 0 {
		job.Threads = max(1, runtime.NumCPU() / *workers)
	}
	if job.MicroBatch < 1 || job.MicroBatch > job.GlobalBatch {
		return usage.Errorf("--micro-batch %d must be within [1, --global-batch %d]", job.MicroBatch, job.GlobalBatch)
	}
	if *workers == 1 {
		job.Members = []string{""}
		res, err := benchTrain(ctx, job, nil)
		if err != nil {
			return err
		}
		return json.NewEncoder(e.stdout).Encode(res)
	}
	return benchProcs(ctx, e, job, *workers, *tlsOn)
}

// benchProcs starts n rank processes, tells each the members, and copies
// rank 0's result lines to stdout.
func benchProcs(ctx context.Context, e *env, job benchJob, n int, tlsOn bool) error {
	if n < 1 {
		return usage.Errorf("--workers %d must be at least 1", n)
	}
	if tlsOn {
		dir, err := benchTLSDir(n)
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		job.TLSDir = dir
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	type proc struct {
		cmd *exec.Cmd
		in  io.WriteCloser
		out *bufio.Reader
	}
	ps := make([]proc, n)
	defer func() {
		for _, p := range ps {
			if p.cmd != nil && p.cmd.Process != nil {
				p.cmd.Process.Kill()
				p.cmd.Wait()
			}
		}
	}()
	members := make([]string, n)
	for i := range ps {
		cmd := exec.CommandContext(ctx, self, "bench-rank", "--kind", job.Kind)
		cmd.Stderr = e.stderr
		cmd.Env = rankEnv(n)
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		in, err := cmd.StdinPipe()
		if err != nil {
			return err
		}
		out, err := cmd.StdoutPipe()
		if err != nil {
			return err
		}
		if err := cmd.Start(); err != nil {
			return err
		}
		ps[i] = proc{cmd: cmd, in: in, out: bufio.NewReader(out)}
		line, err := ps[i].out.ReadString('\n')
		if err != nil {
			return fmt.Errorf("bench rank %d did not report its address: %v", i, err)
		}
		members[i] = strings.TrimSpace(line)
	}
	for i := range ps {
		j := job
		j.Rank, j.Members = i, members
		if err := json.NewEncoder(ps[i].in).Encode(j); err != nil {
			return err
		}
		ps[i].in.Close()
	}
	if _, err := io.Copy(e.stdout, ps[0].out); err != nil {
		return err
	}
	var errs []error
	for i := range ps {
		io.Copy(io.Discard, ps[i].out)
		if err := ps[i].cmd.Wait(); err != nil {
			errs = append(errs, fmt.Errorf("bench rank %d: %w", i, err))
		}
		ps[i].cmd = nil
	}
	return errors.Join(errs...)
}

// benchRunName is the run of a benchmark's ephemeral CA.
const benchRunName = "bench"

// benchTLSDir makes an ephemeral CA and a certificate per rank, worker
// rank-<i>, in a new private directory (`ringtrain certs`' layout).
func benchTLSDir(n int) (string, error) {
	dir, err := os.MkdirTemp("", "ringtrain-bench-tls-")
	if err != nil {
		return "", err
	}
	ids := make([]pki.Identity, n)
	for i := range ids {
		ids[i] = pki.Worker(benchRunName, "rank-"+strconv.Itoa(i))
	}
	if _, _, err := issueCerts(dir, benchRunName, ids, pki.IssueOptions{}, false); err != nil {
		os.RemoveAll(dir)
		return "", err
	}
	return dir, nil
}

// benchRankTLS is a rank's mutual-TLS setup from the job's TLSDir and the
// ranks' identities, as a worker's ring has them; nil without TLSDir.
func benchRankTLS(job benchJob) (*allreduce.TLS, []string, error) {
	if job.TLSDir == "" {
		return nil, nil, nil
	}
	src, err := pki.NewSource(pki.DirFiles(pki.LeafDir(job.TLSDir, pki.Worker(benchRunName, "rank-"+strconv.Itoa(job.Rank)))))
	if err != nil {
		return nil, nil, err
	}
	ids := make([]string, len(job.Members))
	for i := range ids {
		ids[i] = pki.Worker(benchRunName, "rank-"+strconv.Itoa(i)).String()
	}
	identify := func(c *x509.Certificate) (string, error) {
		id, err := pki.IdentityOf(c)
		return id.String(), err
	}
	return &allreduce.TLS{Server: src.ServerConfig(), Client: src.ClientConfig(), Identify: identify}, ids, nil
}

// rankEnv is the environment of one of n rank processes on this machine.
// With more ranks than cores, each Go runtime gets its share of the cores
// (GOMAXPROCS, unless already set): idle Ps spinning for work in one rank
// only take the core from another. 4 ranks on 2 cores moved about 20% more
// bytes per second so; with a core or more per rank it changed nothing.
func rankEnv(n int) []string {
	env := os.Environ()
	if _, set := os.LookupEnv("GOMAXPROCS"); !set && n > runtime.NumCPU() {
		env = append(env, "GOMAXPROCS="+strconv.Itoa(max(1, runtime.NumCPU()/n)))
	}
	return env
}

// runBenchRank is one rank: it listens, prints its address, reads the job
// from stdin, runs it and (rank 0) prints the results.
func runBenchRank(ctx context.Context, e *env, args []string) error {
	fs := e.newFlagSet("One rank of a benchmark: prints its address, reads the job as JSON on stdin.")
	kind := fs.String("kind", "allreduce", "train, allreduce or wire (wire listens on bare TCP, the others serve gRPC)")
	if err := usage.ParseFlags(fs, args); err != nil {
		return err
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	if *kind == "wire" || *kind == "allreduce" {
		return benchRing(ctx, e, lis, *kind)
	}
	// The address first: the job, which says whether to speak TLS, comes
	// after every rank has listened.
	fmt.Fprintln(e.stdout, lis.Addr().String())
	var job benchJob
	if err := json.NewDecoder(os.Stdin).Decode(&job); err != nil {
		lis.Close()
		return fmt.Errorf("bench-rank: read job: %w", err)
	}
	tlsCfg, ids, err := benchRankTLS(job)
	if err != nil {
		lis.Close()
		return err
	}
	var opts []allreduce.GRPCOption
	if tlsCfg != nil {
		opts = append(opts, allreduce.WithTLS(*tlsCfg))
	}
	tr, err := allreduce.NewGRPCTransport(lis, opts...)
	if err != nil {
		return err
	}
	defer tr.Close()
	ring, err := allreduce.NewRing(ctx, tr, allreduce.Config{RunID: "bench", Generation: 1, Members: job.Members, Rank: job.Rank,
		Identities: ids, PeerTimeout: 30 * time.Second})
	if err != nil {
		return err
	}
	defer ring.Close()
	if job.Kind != "train" {
		return fmt.Errorf("bench-rank: unknown kind %q", job.Kind)
	}
	res, err := benchTrain(ctx, job, ring)
	if err != nil || job.Rank != 0 {
		return err
	}
	return json.NewEncoder(e.stdout).Encode(res)
}

type trainResult struct {
	System           string  `json:"system"`
	Workers          int     `json:"workers"`
	ThreadsPerWorker int     `json:"threads_per_worker"`
	Layers           string  `json:"layers"`
	GlobalBatch      int     `json:"global_batch"`
	Exact            bool    `json:"exact"`
	Steps            int     `json:"steps"`
	SamplesPerSec    float64 `json:"samples_per_sec"`
	StepMsMedian     float64 `json:"step_ms_median"`
	LossFirst        float64 `json:"loss_first"`
	LossLast         float64 `json:"loss_last"`
}

// benchTrain mirrors torch_ddp_mlp.py: fixed random inputs (4096 examples),
// each rank its slice of the global batch, SGD with momentum 0.9 at a
// constant rate; every step's time covers forward, backward, the all-reduce
// and the update. It trains through the same train.Stepper as `ringtrain
// train` and the workers, so it measures the product's step.
func benchTrain(ctx context.Context, job benchJob, ring *allreduce.Ring) (trainResult, error) {
	nn.SetThreads(job.Threads)
	layers, err := nn.ParseLayers(job.Layers)
	if err != nil {
		return trainResult{}, usage.Errorf("--layers %q: %v", job.Layers, err)
	}
	const n = 4096
	in, out := layers[0], layers[len(layers)-1]
	rng := rand.New(rand.NewPCG(job.Seed+1, 2))
	data := &dataset.Set{X: make([]float32, n*in), Labels: make([]int32, n), N: n, Dim: in, Classes: out}
	for i := range data.X {
		data.X[i] = rng.Float32()
	}
	for i := range data.Labels {
		data.Labels[i] = int32(rng.IntN(out))
	}
	cfg := train.DefaultConfig()
	cfg.Layers, cfg.Batch, cfg.LR, cfg.Seed = job.Layers, job.GlobalBatch, job.LR, job.Seed
	cfg.Schedule, cfg.Shuffle, cfg.Steps = "constant", false, int64(job.Warmup+job.Steps)
	cfg.Data, cfg.Threads = "random", job.Threads
	cfg.Exact, cfg.MicroBatch, cfg.BucketMiB = job.Exact, max(job.MicroBatch, 1), job.BucketMiB
	st, err := train.NewState(cfg, data)
	if err != nil {
		return trainResult{}, err
	}
	var red train.Reducer = train.SingleProcess{}
	if ring != nil {
		red = train.RingReducer(ring)
	}
	stepper := train.NewStepper(st, data, red)
	world := red.World()
	var times []time.Duration
	var losses []float64
	for step := 0; step < job.Warmup+job.Steps; step++ {
		t0 := time.Now()
		r, err := stepper.Step(ctx, false)
		if err != nil {
			return trainResult{}, err
		}
		dt := time.Since(t0)
		if step >= job.Warmup {
			times = append(times, dt)
			losses = append(losses, r.Loss)
		}
	}
	if ring != nil {
		// The slowest rank bounds a synchronous step: report after a barrier.
		if err := ring.Barrier(ctx); err != nil {
			return trainResult{}, err
		}
	}
	var total time.Duration
	for _, t := range times {
		total += t
	}
	system := "ringtrain-single"
	if world > 1 {
		system = "ringtrain-ring-grpc"
		if job.TLSDir != "" {
			system += "-tls"
		}
	}
	return trainResult{
		System: system, Workers: world, ThreadsPerWorker: job.Threads, Layers: job.Layers,
		GlobalBatch: job.GlobalBatch, Exact: job.Exact, Steps: job.Steps,
		SamplesPerSec: roundTo(float64(job.Steps*job.GlobalBatch)/total.Seconds(), 1),
		StepMsMedian:  roundTo(median(times).Seconds()*1000, 3),
		LossFirst:     roundTo(losses[0], 4), LossLast: roundTo(losses[len(losses)-1], 4),
	}, nil
}

// benchRing is one rank of `bench allreduce` (the ring over gRPC) or
// `bench wire` (the same ring over bare TCP): it prints its address, reads
// the job and (rank 0) prints one line per size.
func benchRing(ctx context.Context, e *env, lis net.Listener, kind string) error {
	defer lis.Close()
	fmt.Fprintln(e.stdout, lis.Addr().String())
	var job benchJob
	if err := json.NewDecoder(os.Stdin).Decode(&job); err != nil {
		return fmt.Errorf("bench-rank: read job: %w", err)
	}
	if dir := os.Getenv(benchProfileEnv); dir != "" {
		stop, err := startCPUProfile(filepath.Join(dir, fmt.Sprintf("%s-rank%d.pprof", kind, job.Rank)))
		if err != nil {
			return err
		}
		defer stop()
	}
	warmup := job.Warmup
	if warmup == 0 {
		warmup = -1 // none, as asked (zero means the default below)
	}
	var res []allreduce.BenchResult
	var err error
	if kind == "wire" {
		res, err = allreduce.WireBench(ctx, allreduce.WireConfig{Listener: lis, Members: job.Members, Rank: job.Rank,
			SizesMiB: job.SizesMiB, Warmup: warmup, Iters: job.Iters})
	} else {
		tlsCfg, ids, terr := benchRankTLS(job)
		if terr != nil {
			return terr
		}
		res, err = allreduce.BenchWorker(ctx, allreduce.BenchConfig{Listener: lis, Members: job.Members, Rank: job.Rank,
			SizesMiB: job.SizesMiB, Warmup: warmup, Iters: job.Iters, PeerTimeout: 30 * time.Second,
			TLS: tlsCfg, Identities: ids})
	}
	if err != nil || job.Rank != 0 {
		return err
	}
	enc := json.NewEncoder(e.stdout)
	for _, r := range res {
		if err := enc.Encode(r); err != nil {
			return err
		}
	}
	return nil
}

// benchProfileEnv, when set to a directory, makes every rank of `bench
// allreduce` and `bench wire` write a CPU profile of its run there
// (<kind>-rank<N>.pprof), to see where the ring spends CPU per byte.
const benchProfileEnv = "RINGTRAIN_BENCH_CPUPROFILE"

func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("bench-rank: %s: %w", benchProfileEnv, err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("bench-rank: %s: %w", benchProfileEnv, err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}

func median(ts []time.Duration) time.Duration {
	if len(ts) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ts...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func roundTo(v float64, digits int) float64 {
	p := 1.0
	for i := 0; i < digits; i++ {
		p *= 10
	}
	return float64(int64(v*p+0.5)) / p
}
