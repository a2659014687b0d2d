package chaos

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/ringtrain/ringtrain/cluster"
	"github.com/ringtrain/ringtrain/train"
)

// chaosRun is one scenario against one compose project.
type chaosRun struct {
	o       chaosOptions
	sc      chaosScenario
	project string
	env     []string
	log     io.Writer
	rng     *rand.Rand
	cli     *cluster.Client
	res     *chaosResult
	refs    *chaosRefCache
	ref     *chaosReference

	mu       sync.Mutex
	gens     map[uint64]cluster.Generation
	lastGen  cluster.Generation
	progress cluster.Progress
	done     *train.Summary

	// killed are containers the scenario left dead on purpose.
	killed map[string]bool
	// restartAt: the scenario killed every worker and coordinator and
	// started them again (corrupt-checkpoint) when the step log was this
	// many bytes long; -1 if it did not.
	restartAt int
	// resumeAt is the step the restarted ring must resume from.
	resumeAt int64
	// corrupt is the checkpoint directory the scenario corrupted.
	corrupt string

	namesMu   sync.Mutex
	hostNames map[string]string // worker ID (container hostname) → worker-N
}

func (r *chaosRun) logf(format string, args ...any) {
	fmt.Fprintf(r.log, "%s chaos %s: %s\n", time.Now().Format("15:04:05"), r.sc.name, fmt.Sprintf(format, args...))
}

func (r *chaosRun) note(format string, args ...any) {
	s := fmt.Sprintf(format, args...)
	r.logf("%s", s)
	r.mu.Lock()
	r.res.Notes = append(r.res.Notes, s)
	r.mu.Unlock()
}

func runChaosScenario(ctx context.Context, log io.Writer, o chaosOptions, sc chaosScenario, refs *chaosRefCache) (res chaosResult) {
	start := time.Now()
	seed := o.seed
	for _, c := range sc.name {
		seed = seed*31 + int64(c)
	}
	r := &chaosRun{
		o: o, sc: sc, project: o.project + "-" + sc.name, log: log,
		rng:       rand.New(rand.NewSource(seed)),
		res:       &res,
		refs:      refs,
		gens:      map[uint64]cluster.Generation{},
		killed:    map[string]bool{},
		restartAt: -1,
	}
	res = chaosResult{Scenario: sc.name, Project: r.project, Seed: o.seed, StrikeStep: o.strikeStep, Target: o.target, Generations: []string{}}

	// Teardown whatever happens: a failed step, a panic, Ctrl-C (ctx).
	defer func() {
		if p := recover(); p != nil {
			res.Error = fmt.Sprintf("panic: %v", p)
			res.Passed = false
		}
		if len(res.Generations) == 0 {
			r.recordGenerations(r.polledMembers())
		}
		r.teardown(!res.Passed)
		res.Seconds = math.Round((time.Since(start).Seconds()-res.ReferenceSeconds)*10) / 10
		verdict := "PASS"
		if !res.Passed {
			verdict = "FAIL: " + res.Error
		}
		r.logf("%s in %.0fs (steps %d/%d, accuracy %.4f, params_sha256 %s, reference %s, %d generations)", verdict, res.Seconds,
			res.Steps, res.TotalSteps, res.TestAccuracy, short(res.ParamsSHA256), short(res.ReferenceSHA256), len(res.Generations))
	}()

	// The reference first, outside the scenario's --timeout: the first
	// scenario of an invocation trains it, the others reuse it.
	if err := r.reference(ctx); err != nil {
		res.Error = err.Error()
		return res
	}
	sctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	if err := r.execute(sctx); err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("interrupted: %w", err)
		} else if sctx.Err() != nil {
			err = fmt.Errorf("scenario timed out after %v: %w", o.timeout, err)
		}
		res.Error = err.Error()
		return res
	}
	res.Passed = true
	return res
}

// setEnv sets the environment of the scenario's compose commands: the run
// name, the seed and, once chosen, the host ports.
func (r *chaosRun) setEnv(ports []int) {
	env := append(os.Environ(),
		"RINGTRAIN_RUN="+r.o.run,
		"RINGTRAIN_CHAOS_SEED="+strconv.FormatInt(r.o.seed, 10),
	)
	if len(ports) == 3 {
		env = append(env,
			"RINGTRAIN_CHAOS_ETCD_PORT="+strconv.Itoa(ports[0]),
			"RINGTRAIN_HTTP_PORT="+strconv.Itoa(ports[1]),
			"RINGTRAIN_HTTP_PORT_2="+strconv.Itoa(ports[2]),
		)
	}
	r.env = env
}

// reference gets the undisturbed reference of the run the scenario's
// project trains (with the scenario's seed).
func (r *chaosRun) reference(ctx context.Context) error {
	r.setEnv(nil)
	spec, err := r.referenceSpec(ctx)
	if err != nil {
		return fmt.Errorf("reference: %w", err)
	}
	ref, fresh := r.refs.get(ctx, r.logf, r.o.project, spec)
	if ref.err != nil {
		return ref.err
	}
	r.ref = ref
	r.res.ReferenceSHA256, r.res.ReferenceAccuracy = ref.sum.ParamsSHA256, ref.sum.TestAccuracy
	if fresh {
		r.res.ReferenceSeconds = ref.seconds
	}
	return nil
}

func short(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	if h == "" {
		return "-"
	}
	return h
}

// execute is the scenario: up, reach the strike step, strike, wait for the
// end, check.
func (r *chaosRun) execute(ctx context.Context) error {
	ports, err := chaosFreePorts(3)
	if err != nil {
		return err
	}
	r.setEnv(ports)
	r.logf("compose project %s: up (etcd on 127.0.0.1:%d, dashboard http://127.0.0.1:%d/)", r.project, ports[0], ports[1])
	if _, err := r.composeCmd(ctx, "up", "-d"); err != nil {
		return err
	}
	if cs, err := r.containers(ctx, ""); err == nil {
		r.learnNames(cs)
	}
	ecli, closeEtcd, err := r.etcdClient(ctx, fmt.Sprintf("https://127.0.0.1:%d", ports[0]))
	if err != nil {
		return err
	}
	defer closeEtcd()
	r.cli = cluster.NewClient(ecli, r.o.run, zap.NewNop())
	fctx, stopFollow := context.WithCancel(ctx)
	defer stopFollow()
	go r.follow(fctx)

	// The strike step.
	_, err = r.waitFor(ctx, 3*time.Minute, fmt.Sprintf("the ring to reach step %d", r.o.strikeStep), func() (bool, error) {
		if r.done != nil {
			return false, fmt.Errorf("the run finished (step %d) before the strike step %d; lower --strike-step", r.done.Step, r.o.strikeStep)
		}
		return r.progress.Step >= r.o.strikeStep, nil
	})
	if err != nil {
		return err
	}
	r.res.StruckAt = r.snapshot().progress.Step
	r.res.TotalSteps = r.snapshot().progress.TotalSteps
	r.logf("strike at step %d of %d (%s)", r.res.StruckAt, r.res.TotalSteps, r.genString(r.snapshot().lastGen))
	if err := r.sc.strike(ctx, r); err != nil {
		return fmt.Errorf("strike: %w", err)
	}

	// The end of the run.
	if _, err := r.waitFor(ctx, r.o.timeout, "the run to finish", func() (bool, error) { return r.done != nil, nil }); err != nil {
		return err
	}
	sum := *r.snapshot().done
	r.res.Steps, r.res.TestAccuracy, r.res.ParamsSHA256 = sum.Step, sum.TestAccuracy, sum.ParamsSHA256
	if tp := r.snapshot().progress.TotalSteps; tp > 0 {
		r.res.TotalSteps = tp
	}
	r.logf("done: step %d, test accuracy %.4f, %d workers, params_sha256 %s (reference %s)", sum.Step, sum.TestAccuracy, sum.Workers, sum.ParamsSHA256, r.ref.sum.ParamsSHA256)
	// Workers exit once the run is done; their step log lines are then all written.
	if err := r.waitExited(ctx, 60*time.Second); err != nil {
		r.note("%v", err)
	}
	// After the run, so that the check never delays the strike.
	if g := r.snapshot().lastGen; len(g.Members) > 0 {
		if err := r.checkEtcdLocked(ctx, ports[0], g.Members[0].ID); err != nil {
			return fmt.Errorf("etcd's TLS and RBAC: %w", err)
		}
		r.note("etcd refused a plaintext client, a TLS client without a certificate, and %s's certificate writing the generation", r.names([]string{g.Members[0].ID})[0])
	}
	return r.checkAll(ctx, sum)
}

// checkAll runs the checks common to every scenario, then the scenario's.
func (r *chaosRun) checkAll(ctx context.Context, sum train.Summary) error {
	var errs []error
	if r.res.TotalSteps <= 0 {
		errs = append(errs, errors.New("no total step count in the run's progress"))
	} else if sum.Step != r.res.TotalSteps {
		errs = append(errs, fmt.Errorf("the run ended at step %d of %d", sum.Step, r.res.TotalSteps))
	}
	if err := checkReference(sum, r.ref); err != nil {
		errs = append(errs, err)
	}
	if r.o.target > 0 && sum.TestAccuracy < r.o.target {
		errs = append(errs, fmt.Errorf("test accuracy %.4f below --target-accuracy %.4f", sum.TestAccuracy, r.o.target))
	}
	members := r.members(ctx)
	r.recordGenerations(members)

	raw, err := r.readVolumeFile(ctx, "/checkpoints/steps.jsonl")
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("step log: %w", err))...)
	}
	if r.o.logsDir != "" {
		os.WriteFile(filepath.Join(r.o.logsDir, r.sc.name+".steps.jsonl"), raw, 0o644)
	}
	var recs []chaosStep
	var bad int
	if r.restartAt >= 0 && r.restartAt <= len(raw) {
		// Lines from before the full restart, then from after it.
		recs, bad = parseChaosStepLog(raw[:r.restartAt], 0)
		after, bad1 := parseChaosStepLog(raw[r.restartAt:], 1)
		recs, bad = append(recs, after...), bad+bad1
	} else {
		recs, bad = parseChaosStepLog(raw, 0)
	}
	r.res.StepLogLines = len(recs)
	if bad > 0 {
		r.note("%d step log lines did not parse", bad)
	}
	rep, err := checkChaosStepLog(recs, members, r.res.TotalSteps, r.restartAt >= 0, r.resumeAt)
	if err != nil {
		errs = append(errs, fmt.Errorf("step log: %w", err))
	}
	if rep != nil {
		r.res.FinalWorkers, r.res.FinalLoss = rep.FinalRanks, rep.FinalLoss
	}
	if err := r.checkContainers(ctx); err != nil {
		errs = append(errs, err)
	}
	if r.sc.check != nil && rep != nil {
		if err := r.sc.check(ctx, r, rep); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
