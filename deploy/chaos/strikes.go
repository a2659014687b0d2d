package chaos

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ringtrain/ringtrain/cluster"
)

func strikeKillWorker(ctx context.Context, r *chaosRun) error {
	v, err := r.pickWorker(ctx)
	if err != nil {
		return err
	}
	before := r.snapshot().lastGen
	r.logf("kill -9 %s (%s)", v.label(), v.Config.Hostname)
	if _, err := r.docker(ctx, "kill", "--signal", "KILL", v.ID); err != nil {
		return err
	}
	r.killed[v.ID] = true
	g, err := r.waitGeneration(ctx, 30*time.Second, "a generation without "+v.label(), before.Gen, func(g cluster.Generation) bool {
		return g.Rank(v.Config.Hostname) < 0
	})
	if err != nil {
		return err
	}
	r.note("%s killed at step %d; survivors formed %s", v.label(), r.res.StruckAt, r.genString(g))
	return nil
}

func strikeKillLeader(ctx context.Context, r *chaosRun) error {
	qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	leader, ok, err := r.cli.Leader(qctx)
	cancel()
	if err != nil || !ok {
		return fmt.Errorf("no leader coordinator in etcd (%v)", err)
	}
	cs, err := r.containers(ctx, leader)
	if err != nil {
		return err
	}
	if len(cs) != 1 || !cs[0].State.Running {
		return fmt.Errorf("the leader %q is not one running container of service %s", leader, leader)
	}
	r.res.Victim = leader
	stepBefore := r.snapshot().progress.Step
	r.logf("kill -9 the leader %s", leader)
	if _, err := r.docker(ctx, "kill", "--signal", "KILL", cs[0].ID); err != nil {
		return err
	}
	r.killed[cs[0].ID] = true
	start := time.Now()
	var next string
	for next == "" {
		qctx, cancel := context.WithTimeout(ctx, time.Second)
		l, ok, err := r.cli.Leader(qctx)
		cancel()
		switch {
		case err == nil && ok && l != leader:
			next = l
		case time.Since(start) > 45*time.Second:
			return fmt.Errorf("no new leader %v after %s was killed", time.Since(start).Round(time.Second), leader)
		case ctx.Err() != nil:
			return ctx.Err()
		default:
			time.Sleep(100 * time.Millisecond)
		}
	}
	r.note("leader %s killed at step %d; %s leads after %.1fs", leader, r.res.StruckAt, next, time.Since(start).Seconds())
	// Training goes on under the new leader.
	_, err = r.waitFor(ctx, 60*time.Second, "progress after the leader's death", func() (bool, error) {
		return r.done != nil || r.progress.Step > stepBefore+50, nil
	})
	return err
}

func strikePauseWorker(ctx context.Context, r *chaosRun) error {
	v, err := r.pickWorker(ctx)
	if err != nil {
		return err
	}
	before := r.snapshot().lastGen
	r.logf("docker pause %s for %v", v.label(), r.o.outage)
	if _, err := r.docker(ctx, "pause", v.ID); err != nil {
		return err
	}
	paused := time.Now()
	g, err := r.waitGeneration(ctx, r.o.outage, "a generation without the paused "+v.label(), before.Gen, func(g cluster.Generation) bool {
		return g.Rank(v.Config.Hostname) < 0
	})
	if uerr := r.endOutage(ctx, paused, "unpause", v.ID); uerr != nil {
		return uerr
	}
	if err != nil {
		return err
	}
	r.note("%s paused at step %d; the ring went on as %s after %.1fs", v.label(), r.res.StruckAt, r.genString(g), g.Created.Sub(paused).Seconds())
	return r.waitRejoin(ctx, v, g.Gen)
}

// endOutage waits until the outage begun at since has lasted r.o.outage (or
// ctx ends), then runs docker args to undo it, even after ctx's end but for
// at most a minute.
func (r *chaosRun) endOutage(ctx context.Context, since time.Time, args ...string) error {
	if rest := r.o.outage - time.Since(since); rest > 0 {
		select {
		case <-ctx.Done():
		case <-time.After(rest):
		}
	}
	uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	_, err := r.docker(uctx, args...)
	return err
}

// waitRejoin waits for a generation after gen that has v again.
func (r *chaosRun) waitRejoin(ctx context.Context, v chaosContainer, gen uint64) error {
	back := time.Now()
	g, err := r.waitGeneration(ctx, 90*time.Second, v.label()+" to rejoin the ring", gen, func(g cluster.Generation) bool {
		return g.Rank(v.Config.Hostname) >= 0
	})
	if err != nil {
		return err
	}
	r.note("%s rejoined in %s %.1fs after it came back", v.label(), r.genString(g), time.Since(back).Seconds())
	return nil
}

func strikeDisconnectWorker(ctx context.Context, r *chaosRun) error {
	v, err := r.pickWorker(ctx)
	if err != nil {
		return err
	}
	if len(v.NetworkSettings.Networks) != 1 {
		return fmt.Errorf("%s is on %d networks, want 1", v.label(), len(v.NetworkSettings.Networks))
	}
	var network string
	var aliases []string
	for n, s := range v.NetworkSettings.Networks {
		network, aliases = n, s.Aliases
	}
	before := r.snapshot().lastGen
	r.logf("docker network disconnect %s %s for %v", network, v.label(), r.o.outage)
	if _, err := r.docker(ctx, "network", "disconnect", network, v.ID); err != nil {
		return err
	}
	off := time.Now()
	g, err := r.waitGeneration(ctx, r.o.outage, "a generation without the disconnected "+v.label(), before.Gen, func(g cluster.Generation) bool {
		return g.Rank(v.Config.Hostname) < 0
	})
	args := []string{"network", "connect"}
	for _, a := range aliases {
		if a != v.Config.Hostname && !strings.HasPrefix(v.ID, a) { // docker adds the short ID itself
			args = append(args, "--alias", a)
		}
	}
	if cerr := r.endOutage(ctx, off, append(args, network, v.ID)...); cerr != nil {
		return cerr
	}
	if err != nil {
		return err
	}
	r.note("%s disconnected at step %d; the ring went on as %s after %.1fs", v.label(), r.res.StruckAt, r.genString(g), g.Created.Sub(off).Seconds())
	return r.waitRejoin(ctx, v, g.Gen)
}

func strikeRestartEtcd(ctx context.Context, r *chaosRun) error {
	cs, err := r.containers(ctx, "etcd")
	if err != nil {
		return err
	}
	if len(cs) != 1 {
		return fmt.Errorf("%d etcd containers, want 1", len(cs))
	}
	r.res.Victim = "etcd"
	before := r.snapshot()
	r.logf("docker restart etcd")
	start := time.Now()
	if _, err := r.docker(ctx, "restart", "-t", "5", cs[0].ID); err != nil {
		return err
	}
	took := time.Since(start)
	// etcd answers again and the ring publishes progress past the strike.
	s, err := r.waitFor(ctx, 60*time.Second, "progress after the etcd restart", func() (bool, error) {
		return r.done != nil || (r.progress.Time.After(start.Add(took)) && r.progress.Step > before.progress.Step), nil
	})
	if err != nil {
		return err
	}
	r.note("etcd restarted at step %d in %.1fs; progress resumed at step %d, %s", r.res.StruckAt, took.Seconds(), s.progress.Step, r.genString(s.lastGen))
	return nil
}

func strikeScale(n int) func(ctx context.Context, r *chaosRun) error {
	return func(ctx context.Context, r *chaosRun) error {
		before := r.snapshot().lastGen
		r.logf("compose up -d --scale worker=%d", n)
		if _, err := r.composeCmd(ctx, "up", "-d", "--no-recreate", "--scale", fmt.Sprintf("worker=%d", n), "worker"); err != nil {
			return err
		}
		ws, err := r.containers(ctx, "worker")
		if err == nil {
			r.learnNames(ws)
		}
		start := time.Now()
		g, err := r.waitGeneration(ctx, 90*time.Second, fmt.Sprintf("a generation of %d workers", n), before.Gen, func(g cluster.Generation) bool {
			return len(g.Members) == n
		})
		if err != nil {
			return err
		}
		r.note("scaled from %d to %d workers at step %d: %s (%s) %.1fs later", len(before.Members), n, r.res.StruckAt, r.genString(g), g.Reason, time.Since(start).Seconds())
		return nil
	}
}

func strikeCorruptCheckpoint(ctx context.Context, r *chaosRun) error {
	cs, err := r.containers(ctx, "")
	if err != nil {
		return err
	}
	r.learnNames(cs)
	// Every worker and coordinator dies at once (a power cut); etcd stays.
	var procs, coords, workers []string
	for _, c := range cs {
		switch s := c.service(); {
		case s == "worker":
			workers = append(workers, c.ID)
		case strings.HasPrefix(s, "coordinator"):
			coords = append(coords, c.ID)
		}
	}
	procs = append(append(procs, workers...), coords...)
	r.res.Victim = "every worker and coordinator"
	r.logf("kill -9 every worker and coordinator (%d containers)", len(procs))
	if _, err := r.docker(ctx, append([]string{"kill", "--signal", "KILL"}, procs...)...); err != nil {
		return err
	}
	stoppedAt := r.snapshot().progress.Step
	// Where the step log's second life starts: every writer is dead.
	before, err := r.readVolumeFile(ctx, "/checkpoints/steps.jsonl")
	if err != nil {
		return err
	}
	r.restartAt = len(before)

	tr, err := r.volumeTar(ctx, "/checkpoints")
	if err != nil {
		return err
	}
	newest, prev, model, err := newestCheckpoints(tr)
	if err != nil {
		return err
	}
	corrupt := corruptBytes(model)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: "model.safetensors", Mode: 0o644, Size: int64(len(corrupt)), ModTime: time.Now(), Uid: 65532, Gid: 65532, Typeflag: tar.TypeReg})
	tw.Write(corrupt)
	tw.Close()
	dest := coords[0] + ":/checkpoints/" + newest
	cmd := exec.CommandContext(ctx, "docker", "cp", "-", dest)
	cmd.Stdin = &buf
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("docker cp - %s: %v: %s", dest, err, strings.TrimSpace(string(out)))
	}
	back, err := r.readVolumeFile(ctx, "/checkpoints/"+newest+"/model.safetensors")
	if err != nil {
		return err
	}
	if !bytes.Equal(back, corrupt) {
		return fmt.Errorf("%s/model.safetensors did not change on the volume", newest)
	}
	r.corrupt = newest
	r.resumeAt, _ = strconv.ParseInt(strings.TrimPrefix(prev, "step-"), 10, 64)
	r.note("all processes killed at step %d; corrupted %s/model.safetensors (%d bytes flipped); expecting a resume from %s", stoppedAt, newest, len(model)-countEqual(model, corrupt), prev)

	r.logf("docker start the coordinators, then the workers")
	if _, err := r.docker(ctx, append([]string{"start"}, coords...)...); err != nil {
		return err
	}
	if _, err := r.docker(ctx, append([]string{"start"}, workers...)...); err != nil {
		return err
	}
	restarted := time.Now()
	s, err := r.waitFor(ctx, 90*time.Second, "progress after the restart", func() (bool, error) {
		return r.done != nil || r.progress.Time.After(restarted), nil
	})
	if err != nil {
		return err
	}
	r.note("restarted %.1fs ago: the ring is at step %d, %s", time.Since(restarted).Seconds(), s.progress.Step, r.genString(s.lastGen))
	return nil
}

func checkCorruptCheckpoint(ctx context.Context, r *chaosRun, a *chaosStepReport) error {
	var errs []error
	if a.ResumedAt != r.resumeAt {
		errs = append(errs, fmt.Errorf("the restarted ring resumed at step %d, want the newest valid checkpoint's %d", a.ResumedAt, r.resumeAt))
	}
	ws, err := r.containers(ctx, "worker")
	if err != nil {
		return err
	}
	warned := 0
	for _, w := range ws {
		out, _ := r.docker(ctx, "logs", w.ID)
		for _, line := range strings.Split(out, "\n") {
			if strings.Contains(line, "corrupt") && strings.Contains(line, r.corrupt) {
				warned++
				break
			}
		}
	}
	if warned == 0 {
		errs = append(errs, fmt.Errorf("no worker's log warns about the corrupt checkpoint %s", r.corrupt))
	} else {
		r.note("%d of %d workers warned that %s is corrupt; the ring resumed at step %d", warned, len(ws), r.corrupt, a.ResumedAt)
	}
	if a.Reapplied > 0 {
		r.note("%d of the %d steps applied before the stop and again after it had the same loss bit for bit", a.Reproduced, a.Reapplied)
	}
	return errors.Join(errs...)
}

// newestCheckpoints reads a tar of the checkpoint directory: the newest
// complete checkpoint (with a manifest), the one before it, and the newest's
// model.safetensors.
func newestCheckpoints(tr *tar.Reader) (newest, prev string, model []byte, err error) {
	complete := map[string]bool{}
	models := map[string][]byte{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return "", "", nil, err
		}
		parts := strings.Split(path.Clean(h.Name), "/")
		if len(parts) < 2 {
			continue
		}
		dir, file := parts[len(parts)-2], parts[len(parts)-1]
		if !strings.HasPrefix(dir, "step-") {
			continue
		}
		switch file {
		case "manifest.json":
			complete[dir] = true
		case "model.safetensors":
			b, err := io.ReadAll(tr)
			if err != nil {
				return "", "", nil, err
			}
			models[dir] = b
		}
	}
	var dirs []string
	for d := range complete {
		if models[d] != nil {
			dirs = append(dirs, d)
		}
	}
	sort.Strings(dirs)
	if len(dirs) < 2 {
		return "", "", nil, fmt.Errorf("%d complete checkpoints (%v) when every process was killed, want 2: strike later (--strike-step) or checkpoint more often", len(dirs), dirs)
	}
	newest, prev = dirs[len(dirs)-1], dirs[len(dirs)-2]
	return newest, prev, models[newest], nil
}

// corruptBytes returns b with 16 bytes in the middle of its data flipped.
func corruptBytes(b []byte) []byte {
	out := append([]byte(nil), b...)
	for i := len(out) / 2; i < len(out)/2+16 && i < len(out); i++ {
		out[i] ^= 0x55
	}
	return out
}

func countEqual(a, b []byte) int {
	n := 0
	for i := range a {
		if i < len(b) && a[i] == b[i] {
			n++
		}
	}
	return n
}
