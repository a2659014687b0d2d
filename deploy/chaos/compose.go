package chaos

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ringtrain/ringtrain/cluster"
)

func (r *chaosRun) composeArgs(args ...string) []string {
	c := strings.Fields(r.o.compose)
	return append(append(c[1:], "-p", r.project, "-f", r.o.composeFile, "-f", r.o.override), args...)
}

func (r *chaosRun) composeCmd(ctx context.Context, args ...string) (string, error) {
	c := strings.Fields(r.o.compose)
	return r.exec(ctx, c[0], r.composeArgs(args...)...)
}

func (r *chaosRun) docker(ctx context.Context, args ...string) (string, error) {
	return r.exec(ctx, "docker", args...)
}

func (r *chaosRun) exec(ctx context.Context, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = r.env
	cmd.Dir = filepath.Dir(r.o.composeFile)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, lastLines(out.String(), 10))
	}
	return out.String(), nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// chaosContainer is the part of `docker inspect` chaos reads.
type chaosContainer struct {
	ID           string `json:"Id"`
	Name         string `json:"Name"`
	RestartCount int    `json:"RestartCount"`
	State        struct {
		Status   string `json:"Status"`
		ExitCode int    `json:"ExitCode"`
		Paused   bool   `json:"Paused"`
		Running  bool   `json:"Running"`
	} `json:"State"`
	Config struct {
		Hostname string            `json:"Hostname"`
		Labels   map[string]string `json:"Labels"`
	} `json:"Config"`
	NetworkSettings struct {
		Networks map[string]struct {
			Aliases []string `json:"Aliases"`
		} `json:"Networks"`
	} `json:"NetworkSettings"`
}

func (c chaosContainer) service() string { return c.Config.Labels["com.docker.compose.service"] }

// label is the container's short name: worker-2, coordinator-1, etcd.
func (c chaosContainer) label() string {
	s := c.service()
	if s == "worker" {
		return s + "-" + c.Config.Labels["com.docker.compose.container-number"]
	}
	return s
}

// containers are the project's containers of service (all if ""), in
// container-number order.
func (r *chaosRun) containers(ctx context.Context, service string) ([]chaosContainer, error) {
	args := []string{"ps", "-aq", "--no-trunc", "--filter", "label=com.docker.compose.project=" + r.project}
	if service != "" {
		args = append(args, "--filter", "label=com.docker.compose.service="+service)
	}
	out, err := r.docker(ctx, args...)
	if err != nil {
		return nil, err
	}
	ids := strings.Fields(out)
	if len(ids) == 0 {
		return nil, nil
	}
	js, err := r.docker(ctx, append([]string{"inspect"}, ids...)...)
	if err != nil {
		return nil, err
	}
	var cs []chaosContainer
	if err := json.Unmarshal([]byte(js), &cs); err != nil {
		return nil, fmt.Errorf("docker inspect: %w", err)
	}
	sort.Slice(cs, func(i, j int) bool {
		if cs[i].service() != cs[j].service() {
			return cs[i].service() < cs[j].service()
		}
		a, _ := strconv.Atoi(cs[i].Config.Labels["com.docker.compose.container-number"])
		b, _ := strconv.Atoi(cs[j].Config.Labels["com.docker.compose.container-number"])
		return a < b
	})
	return cs, nil
}

// names turns worker IDs (container hostnames) into container labels for
// the report: worker-2 rather than 3f2c9a81b0d4.
func (r *chaosRun) names(ids []string) []string {
	out := make([]string, len(ids))
	r.namesMu.Lock()
	defer r.namesMu.Unlock()
	for i, id := range ids {
		if n, ok := r.hostNames[id]; ok {
			out[i] = n
		} else {
			out[i] = id
		}
	}
	return out
}

func (r *chaosRun) genString(g cluster.Generation) string {
	ids := make([]string, len(g.Members))
	for i, m := range g.Members {
		ids[i] = m.ID
	}
	return fmt.Sprintf("gen %d [%s]", g.Gen, strings.Join(r.names(ids), " "))
}

// learnNames records the hostname → label of the project's containers.
func (r *chaosRun) learnNames(cs []chaosContainer) {
	r.namesMu.Lock()
	defer r.namesMu.Unlock()
	if r.hostNames == nil {
		r.hostNames = map[string]string{}
	}
	for _, c := range cs {
		r.hostNames[c.Config.Hostname] = c.label()
	}
}

// runningWorkers are the project's running, unpaused workers.
func (r *chaosRun) runningWorkers(ctx context.Context) ([]chaosContainer, error) {
	cs, err := r.containers(ctx, "worker")
	if err != nil {
		return nil, err
	}
	r.learnNames(cs)
	var out []chaosContainer
	for _, c := range cs {
		if c.State.Running && !c.State.Paused {
			out = append(out, c)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("no running worker container")
	}
	return out, nil
}

// pickWorker chooses the victim with the scenario's seed; it must be a
// member of the current ring.
func (r *chaosRun) pickWorker(ctx context.Context) (chaosContainer, error) {
	ws, err := r.runningWorkers(ctx)
	if err != nil {
		return chaosContainer{}, err
	}
	g := r.snapshot().lastGen
	var in []chaosContainer
	for _, w := range ws {
		if g.Rank(w.Config.Hostname) >= 0 {
			in = append(in, w)
		}
	}
	if len(in) == 0 {
		return chaosContainer{}, fmt.Errorf("no running worker is in %v", g)
	}
	v := in[r.rng.Intn(len(in))]
	r.res.Victim = v.label()
	return v, nil
}

// waitExited waits until no worker or coordinator container runs (they
// exit once the run is done).
func (r *chaosRun) waitExited(ctx context.Context, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		cs, err := r.containers(ctx, "")
		if err != nil {
			return err
		}
		r.learnNames(cs)
		var running []string
		for _, c := range cs {
			if c.service() != "etcd" && c.State.Running {
				running = append(running, c.label())
			}
		}
		if len(running) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("still running %v after the run finished: %s", within, strings.Join(running, ", "))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// checkContainers: no container exited with an error or restarted, except
// those the scenario killed.
func (r *chaosRun) checkContainers(ctx context.Context) error {
	cs, err := r.containers(ctx, "")
	if err != nil {
		return err
	}
	var bad []string
	for _, c := range cs {
		if r.killed[c.ID] {
			continue
		}
		if c.RestartCount > 0 || (!c.State.Running && c.State.ExitCode != 0) {
			bad = append(bad, fmt.Sprintf("%s (%s, exit %d, %d restarts)", c.label(), c.State.Status, c.State.ExitCode, c.RestartCount))
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("containers failed: %s", strings.Join(bad, "; "))
	}
	return nil
}

// readVolumeFile copies one file out of the checkpoints volume through any
// of the project's containers that mount it (stopped ones too).
func (r *chaosRun) readVolumeFile(ctx context.Context, p string) ([]byte, error) {
	tr, err := r.volumeTar(ctx, p)
	if err != nil {
		return nil, err
	}
	for {
		h, err := tr.Next()
		if err != nil {
			return nil, fmt.Errorf("%s: not in the volume: %w", p, err)
		}
		if h.Typeflag == tar.TypeReg {
			return io.ReadAll(tr)
		}
	}
}

// volumeTar is `docker cp CONTAINER:p -`, a tar stream, from a container
// that mounts the checkpoints volume.
func (r *chaosRun) volumeTar(ctx context.Context, p string) (*tar.Reader, error) {
	c, err := r.volumeContainer(ctx)
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, "docker", "cp", c+":"+p, "-")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("docker cp %s:%s: %v: %s", c, p, err, strings.TrimSpace(errb.String()))
	}
	return tar.NewReader(&out), nil
}

func (r *chaosRun) volumeContainer(ctx context.Context) (string, error) {
	cs, err := r.containers(ctx, "")
	if err != nil {
		return "", err
	}
	for _, c := range cs {
		// Workers and coordinators mount it; etcd and the one-shot certs
		// service do not.
		if s := c.service(); s == "worker" || strings.HasPrefix(s, "coordinator") {
			return c.ID, nil
		}
	}
	return "", errors.New("no container of the project mounts the checkpoints volume")
}

// teardown removes the project: containers, network, volumes. It runs on a
// fresh context so that Ctrl-C (which ends ctx) still cleans up.
func (r *chaosRun) teardown(failed bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if r.o.logsDir != "" || failed {
		out, _ := r.composeCmd(ctx, "logs", "--no-color", "--timestamps")
		if r.o.logsDir != "" {
			os.WriteFile(filepath.Join(r.o.logsDir, r.sc.name+".log"), []byte(out), 0o644)
		}
		if failed {
			fmt.Fprintf(r.log, "--- %s: last container log lines ---\n%s\n", r.project, lastLines(out, 60))
		}
	}
	if r.o.keep {
		r.logf("--keep: project %s left up; remove it with: %s down -v --remove-orphans", r.project, strings.Join(append(strings.Fields(r.o.compose)[:1], r.composeArgs()...), " "))
		return
	}
	// A paused container cannot be stopped: unpause first.
	if cs, err := r.containers(ctx, ""); err == nil {
		for _, c := range cs {
			if c.State.Paused {
				r.docker(ctx, "unpause", c.ID)
			}
		}
	}
	if _, err := r.composeCmd(ctx, "down", "-v", "--remove-orphans", "-t", "5"); err != nil {
		r.logf("teardown: %v", err)
	}
	// Whatever compose left (it cannot see a service the files no longer
	// name): everything labelled with the project.
	if err := chaosRemoveProject(ctx, r.project); err != nil {
		r.logf("teardown: %v", err)
	}
}

// chaosRemoveProject removes every container, network and volume that
// carries the compose label of project, and reports what could not be.
func chaosRemoveProject(ctx context.Context, project string) error {
	label := "label=com.docker.compose.project=" + project
	list := func(args ...string) []string {
		out, _ := exec.CommandContext(ctx, "docker", args...).Output()
		return strings.Fields(string(out))
	}
	var errs []error
	rm := func(kind string, ids []string, args ...string) {
		if len(ids) == 0 {
			return
		}
		if out, err := exec.CommandContext(ctx, "docker", append(args, ids...)...).CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("remove %s %v: %v: %s", kind, ids, err, strings.TrimSpace(string(out))))
		}
	}
	rm("containers", list("ps", "-aq", "--filter", label), "rm", "-f", "-v")
	rm("networks", list("network", "ls", "-q", "--filter", label), "network", "rm")
	rm("volumes", list("volume", "ls", "-q", "--filter", label), "volume", "rm", "-f")
	return errors.Join(errs...)
}

func chaosFreePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ports []int
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
