package chaos

import (
	"context"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ringtrain/ringtrain/cluster"
	"github.com/ringtrain/ringtrain/train"
)

// recordGenerations puts the rings of the run into the result.
func (r *chaosRun) recordGenerations(members map[uint64][]string) {
	gs := make([]uint64, 0, len(members))
	for g := range members {
		gs = append(gs, g)
	}
	sort.Slice(gs, func(i, j int) bool { return gs[i] < gs[j] })
	out := []string{}
	for _, g := range gs {
		out = append(out, fmt.Sprintf("gen %d [%s]", g, strings.Join(r.names(members[g]), " ")))
	}
	r.mu.Lock()
	r.res.Generations = out
	r.mu.Unlock()
}

// follow polls etcd: the generation (recording every one it sees), the
// progress and the final summary. Errors (etcd restarting) are skipped.
func (r *chaosRun) follow(ctx context.Context) {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		qctx, cancel := context.WithTimeout(ctx, time.Second)
		g, gok, gerr := r.cli.Generation(qctx)
		p, pok, perr := r.cli.Progress(qctx)
		s, sok, serr := r.cli.Done(qctx)
		cancel()
		r.mu.Lock()
		if gerr == nil && gok {
			if _, seen := r.gens[g.Gen]; !seen {
				r.gens[g.Gen] = g
				if len(g.Members) > 0 {
					fmt.Fprintf(r.log, "%s chaos %s: %s (%s, leader %s)\n", time.Now().Format("15:04:05"), r.sc.name,
						r.genString(g), g.Reason, g.Leader)
				}
			}
			r.lastGen = g
		}
		if perr == nil && pok {
			r.progress = p
		}
		if serr == nil && sok {
			r.done = &s
		}
		r.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

type chaosSnapshot struct {
	lastGen  cluster.Generation
	progress cluster.Progress
	done     *train.Summary
}

func (r *chaosRun) snapshot() chaosSnapshot {
	r.mu.Lock()
	defer r.mu.Unlock()
	return chaosSnapshot{lastGen: r.lastGen, progress: r.progress, done: r.done}
}

// waitFor polls cond (called with r.mu held) until it holds, fails, or
// within passes.
func (r *chaosRun) waitFor(ctx context.Context, within time.Duration, what string, cond func() (bool, error)) (chaosSnapshot, error) {
	deadline := time.Now().Add(within)
	for {
		r.mu.Lock()
		ok, err := cond()
		r.mu.Unlock()
		if err != nil {
			return chaosSnapshot{}, err
		}
		if ok {
			return r.snapshot(), nil
		}
		if time.Now().After(deadline) {
			s := r.snapshot()
			return s, fmt.Errorf("waited %v for %s; the ring is at step %d, %s", within, what, s.progress.Step, r.genString(s.lastGen))
		}
		select {
		case <-ctx.Done():
			return chaosSnapshot{}, fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// waitGeneration waits for a generation newer than after that satisfies ok;
// the run finishing first is an error.
func (r *chaosRun) waitGeneration(ctx context.Context, within time.Duration, what string, after uint64, ok func(cluster.Generation) bool) (cluster.Generation, error) {
	_, err := r.waitFor(ctx, within, what, func() (bool, error) {
		if r.done != nil {
			return false, fmt.Errorf("the run finished before %s", what)
		}
		for n, g := range r.gens {
			if n > after && len(g.Members) > 0 && ok(g) {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		return cluster.Generation{}, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	var best cluster.Generation
	for n, g := range r.gens {
		if n > after && len(g.Members) > 0 && ok(g) && (best.Gen == 0 || n < best.Gen) {
			best = g
		}
	}
	return best, nil
}

// members maps every generation of the run to its ring, from the
// generations seen while polling and the coordinators' "generation" events.
func (r *chaosRun) members(ctx context.Context) map[uint64][]string {
	out := map[uint64][]string{}
	qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	evs, err := r.cli.Events(qctx, 0)
	cancel()
	if err == nil {
		for _, ev := range evs {
			if ev.Kind != "generation" {
				continue
			}
			if g, ids, ok := parseGenerationString(ev.Detail); ok && len(ids) > 0 {
				out[g] = ids
			}
		}
	}
	for n, ids := range r.polledMembers() {
		out[n] = ids
	}
	return out
}

// polledMembers are the non-empty rings seen while polling.
func (r *chaosRun) polledMembers() map[uint64][]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[uint64][]string{}
	for n, g := range r.gens {
		if len(g.Members) == 0 {
			continue
		}
		ids := make([]string, len(g.Members))
		for i, m := range g.Members {
			ids[i] = m.ID
		}
		out[n] = ids
	}
	return out
}

var generationString = regexp.MustCompile(`^gen (\d+) \[([^\]]*)\]`)

// parseGenerationString reads Generation.String(): "gen 3 [w1 w2 w3]".
func parseGenerationString(s string) (uint64, []string, bool) {
	m := generationString.FindStringSubmatch(s)
	if m == nil {
		return 0, nil, false
	}
	g, err := strconv.ParseUint(m[1], 10, 64)
	if err != nil {
		return 0, nil, false
	}
	return g, strings.Fields(m[2]), true
}
