package main

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/ringtrain/ringtrain/cluster"
	"github.com/ringtrain/ringtrain/internal/pki"
	"github.com/ringtrain/ringtrain/internal/usage"
	"github.com/ringtrain/ringtrain/train"
)

func init() {
	register("status", "print a run's state from etcd: leader, ring, workers, progress, checkpoint", runStatus)
}

// statusReport is what `ringtrain status` prints (its --json form): the
// part of the run's snapshot (cluster.ReadSnapshot) that status shows.
type statusReport struct {
	Run          string                    `json:"run"`
	Leader       string                    `json:"leader,omitempty"`
	Coordinators []cluster.CoordinatorInfo `json:"coordinators"`
	Generation   *cluster.Generation       `json:"generation,omitempty"`
	Members      []statusMember            `json:"members"`
	Progress     *cluster.Progress         `json:"progress,omitempty"`
	Checkpoint   *cluster.CheckpointRef    `json:"checkpoint,omitempty"`
	// CheckpointPath is Checkpoint's directory relative to the workers'
	// checkpoint root.
	CheckpointPath string           `json:"checkpoint_path,omitempty"`
	Done           *train.Summary   `json:"done,omitempty"`
	Spec           *cluster.RunSpec `json:"spec,omitempty"`
}

// statusMember is one worker: registered, in the ring, or both.
type statusMember struct {
	ID   string `json:"id"`
	Addr string `json:"addr"`
	// State: "rank N" (in the ring), "standby" (registered, not in the
	// ring), "gone" (in the ring, registration ended).
	State string `json:"state"`
	Rank  int    `json:"rank"`
}

func runStatus(ctx context.Context, e *env, args []string) error {
	fs := e.newFlagSet("Prints a run's state as stored in etcd.")
	endpoints := etcdFlag{"127.0.0.1:2379"}
	fs.Var(&endpoints, "etcd", "etcd endpoints, comma-separated (https:// endpoints: TLS with the certificate of --tls-dir)")
	var tlsFiles pki.Files
	registerTLSFlags(fs, &tlsFiles, pki.RoleClient)
	run := fs.String("run", cluster.DefaultRun, "run name")
	asJSON := fs.Bool("json", false, "print JSON instead of a table")
	timeout := fs.Duration("timeout", 10*time.Second, "give up after this long")
	if err := usage.ParseFlags(fs, args); err != nil {
		return err
	}
	if len(endpoints) == 0 {
		return usage.New("--etcd is empty; give the etcd endpoints, e.g. --etcd 127.0.0.1:2379")
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	ecfg, err := etcdClientTLS(cluster.EtcdClientConfig(endpoints, zap.NewNop()), tlsFiles)
	if err != nil {
		return err
	}
	ecfg.DialTimeout = *timeout
	cli, err := clientv3.New(ecfg)
	if err != nil {
		return fmt.Errorf("etcd %v: %w", []string(endpoints), err)
	}
	defer cli.Close()
	rep, err := gatherStatus(ctx, cluster.NewClient(cli, *run, nil))
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	printStatus(e.stdout, rep, time.Now())
	return nil
}

func gatherStatus(ctx context.Context, c *cluster.Client) (statusReport, error) {
	snap, err := cluster.ReadSnapshot(ctx, c, 0)
	if err != nil {
		return statusReport{}, fmt.Errorf("run %q: %w", c.Run(), err)
	}
	return newStatusReport(snap), nil
}

// newStatusReport is what status shows of s.
func newStatusReport(s cluster.Snapshot) statusReport {
	rep := statusReport{Run: s.Run, Leader: s.Leader, Coordinators: s.Coordinators, Members: []statusMember{},
		Progress: s.Progress, Checkpoint: s.Checkpoint, CheckpointPath: s.CheckpointPath, Done: s.Done, Spec: s.Spec}
	if s.Generation.Gen > 0 {
		rep.Generation = &s.Generation
	}
	for _, m := range s.Members {
		sm := statusMember{ID: m.ID, Addr: m.Addr, State: m.State, Rank: m.Rank}
		switch m.State {
		case cluster.MemberRing:
			sm.State = fmt.Sprintf("rank %d", m.Rank)
		case cluster.MemberFailed:
			sm.State = "gone"
		}
		if m.Rank >= 0 {
			sm.Addr = s.Generation.Members[m.Rank].Addr // the address the ring uses
		}
		rep.Members = append(rep.Members, sm)
	}
	return rep
}

func printStatus(w io.Writer, r statusReport, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	row := func(k, format string, args ...any) { fmt.Fprintf(tw, "%s\t%s\n", k, fmt.Sprintf(format, args...)) }
	row("run", "%s", r.Run)
	if r.Spec == nil {
		row("spec", "none (no coordinator has started this run)")
	}
	leader := r.Leader
	if leader == "" {
		leader = "none"
	}
	var standby []string
	for _, c := range r.Coordinators {
		if c.ID != r.Leader {
			standby = append(standby, c.ID)
		}
	}
	if len(standby) > 0 {
		leader += " (standby: " + strings.Join(standby, ", ") + ")"
	}
	row("leader", "%s", leader)
	switch {
	case r.Generation == nil:
		row("generation", "none yet")
	case len(r.Generation.Members) == 0:
		row("generation", "%d, empty: waiting for workers (%s)", r.Generation.Gen, r.Generation.Reason)
	default:
		ids := make([]string, len(r.Generation.Members))
		for i, m := range r.Generation.Members {
			ids[i] = m.ID
		}
		row("generation", "%d, ring %s (%s)", r.Generation.Gen, strings.Join(ids, " → "), r.Generation.Reason)
	}
	if p := r.Progress; p != nil {
		total := "?"
		if p.TotalSteps > 0 {
			total = fmt.Sprintf("%d (%.1f%%)", p.TotalSteps, 100*float64(p.Step)/float64(p.TotalSteps))
		}
		row("step", "%d / %s, epoch %d, %d workers, as of %s ago", p.Step, total, p.Epoch, p.Workers, age(now, p.Time))
		loss := fmt.Sprintf("%.4f", p.Loss)
		if p.TestAccuracy > 0 {
			loss += fmt.Sprintf(" (test loss %.4f, accuracy %.2f%%)", p.TestLoss, 100*p.TestAccuracy)
		}
		row("loss", "%s", loss)
		row("samples/s", "%.0f", p.SamplesPerSec)
	} else {
		row("step", "no progress yet")
	}
	if ck := r.Checkpoint; ck != nil {
		row("checkpoint", "step %d in %s (gen %d, %s ago)", ck.Step, cmp.Or(r.CheckpointPath, ck.Dir), ck.Gen, age(now, ck.Time))
		if ck.ParamsSHA256 != "" {
			row("params_sha256", "%s", ck.ParamsSHA256)
		}
	} else {
		row("checkpoint", "none")
	}
	if d := r.Done; d != nil {
		row("done", "yes: step %d, test accuracy %.2f%%, %.0f samples/s", d.Step, 100*d.TestAccuracy, d.SamplesPerSec)
	} else {
		row("done", "no")
	}
	tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tADDR\tSTATE")
	for _, m := range r.Members {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", m.ID, m.Addr, m.State)
	}
	if len(r.Members) == 0 {
		fmt.Fprintln(tw, "(no workers)\t\t")
	}
	tw.Flush()
}

func age(now, t time.Time) string {
	if t.IsZero() {
		return "?"
	}
	return now.Sub(t).Round(time.Second).String()
}
