package chaos

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// chaosStep is one line of a worker's step log (worker --step-log).
type chaosStep struct {
	Event string  `json:"event"`
	Gen   uint64  `json:"gen"`
	Rank  int     `json:"rank"`
	Step  int64   `json:"step"`
	From  int     `json:"from"`
	Loss  float64 `json:"loss"`
	// phase is 1 for lines written after a full restart, else 0.
	phase int
}

// parseChaosStepLog parses (part of) the shared step log, marking every
// record with phase; bad counts lines that are not step log JSON.
func parseChaosStepLog(b []byte, phase int) (recs []chaosStep, bad int) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		var r chaosStep
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil || (r.Event != "step" && r.Event != "sync") {
			bad++
			continue
		}
		r.phase = phase
		recs = append(recs, r)
	}
	return recs, bad
}

// chaosStepReport is what the step log check found.
type chaosStepReport struct {
	Workers    int     // distinct workers that logged
	Applied    int     // distinct steps applied
	FinalGen   uint64  // the last generation that trained
	FinalRanks int     // ranks of FinalGen that applied the last step
	FinalLoss  float64 // their loss at the last step
	ResumedAt  int64   // after a full restart: the lowest step a rank synced to (-1: no restart)
	// After a full restart: steps applied before and again after it, and
	// how many of those had the very same loss (bit for bit).
	Reapplied, Reproduced int
}

// checkChaosStepLog checks the workers' shared step log. members maps a
// generation to its ring (rank → worker ID) so that each worker's lines can
// be followed across generations; a generation missing from it is checked
// per rank. Within a worker every applied step is the one after its state
// (no gap, no repeat), and a state transfer never moves a worker back to
// before a step it applied (a repeat) — except across a full restart
// (restarted: every process was killed and started again; records carry
// their phase, 0 before and 1 after), where the ring must resume from
// resumeAt. Together the workers applied every
// step up to total; ranks of one generation that applied a step saw the same
// loss (identical replicas), and every rank of the last generation applied
// the last step with the same loss.
func checkChaosStepLog(recs []chaosStep, members map[uint64][]string, total int64, restarted bool, resumeAt int64) (*chaosStepReport, error) {
	rep := &chaosStepReport{ResumedAt: -1}
	if len(recs) == 0 {
		return rep, errors.New("empty: no worker logged a step")
	}
	who := func(r chaosStep) string {
		if ids, ok := members[r.Gen]; ok && r.Rank >= 0 && r.Rank < len(ids) {
			return ids[r.Rank]
		}
		return fmt.Sprintf("gen %d rank %d", r.Gen, r.Rank)
	}
	// Each worker's lines in generation order (the file keeps each
	// process's own order within a generation).
	type key struct {
		phase int
		id    string
	}
	byWorker := map[key][]chaosStep{}
	var order []key
	ids := map[string]bool{}
	for _, r := range recs {
		k := key{r.phase, who(r)}
		if _, ok := byWorker[k]; !ok {
			order = append(order, k)
		}
		byWorker[k] = append(byWorker[k], r)
		ids[k.id] = true
	}
	rep.Workers = len(ids)
	var errs []error
	fail := func(format string, args ...any) {
		if len(errs) < 10 {
			errs = append(errs, fmt.Errorf(format, args...))
		}
	}
	applied := [2]map[int64]bool{{}, {}}
	loss := map[[3]int64]float64{}
	for _, k := range order {
		rs := byWorker[k]
		sort.SliceStable(rs, func(i, j int) bool { return rs[i].Gen < rs[j].Gen })
		state := int64(-1) // unknown until the first sync
		var stateGen uint64
		for _, r := range rs {
			switch r.Event {
			case "sync":
				if state >= 0 && r.Step < state {
					fail("%s: the state transfer of gen %d moved it back from step %d (applied in gen %d) to %d: steps %d..%d would be applied twice", k.id, r.Gen, state, stateGen, r.Step, r.Step+1, state)
				}
				state, stateGen = r.Step, r.Gen
				if k.phase == 1 && (rep.ResumedAt < 0 || r.Step < rep.ResumedAt) {
					rep.ResumedAt = r.Step
				}
			case "step":
				switch {
				case state >= 0 && r.Step == state:
					fail("%s: applied step %d twice (gen %d)", k.id, r.Step, r.Gen)
				case state >= 0 && r.Step < state:
					fail("%s: applied step %d in gen %d with its state at step %d: a repeat", k.id, r.Step, r.Gen, state)
				case state >= 0 && r.Step > state+1:
					fail("%s: applied step %d in gen %d with its state at step %d: steps %d..%d skipped", k.id, r.Step, r.Gen, state, state+1, r.Step-1)
				}
				state, stateGen = r.Step, r.Gen
				applied[k.phase][r.Step] = true
				lk := [3]int64{int64(k.phase), int64(r.Gen), r.Step}
				if l, ok := loss[lk]; ok && l != r.Loss {
					fail("step %d of gen %d: loss %v on %s, %v on another rank: the replicas differ", r.Step, r.Gen, r.Loss, k.id, l)
				}
				loss[lk] = r.Loss
			}
		}
	}
	gaps := func(ph int, from, to int64) {
		var missing []string
		for s := from; s <= to; s++ {
			if !applied[ph][s] {
				missing = append(missing, strconv.FormatInt(s, 10))
			}
		}
		if len(missing) > 0 {
			if len(missing) > 10 {
				missing = append(missing[:10], fmt.Sprintf("… (%d in all)", len(missing)))
			}
			fail("steps %d..%d: never applied by any worker: %s", from, to, strings.Join(missing, " "))
		}
	}
	all := map[int64]bool{}
	for ph := range applied {
		for s := range applied[ph] {
			all[s] = true
		}
	}
	rep.Applied = len(all)
	last := 0
	if restarted {
		last = 1
		var last0 int64
		for s := range applied[0] {
			last0 = max(last0, s)
		}
		gaps(0, 1, last0)
		if rep.ResumedAt < 0 {
			fail("no rank synced after the restart")
		} else {
			if rep.ResumedAt != resumeAt {
				fail("after the restart the ring resumed at step %d, want %d", rep.ResumedAt, resumeAt)
			}
			gaps(1, rep.ResumedAt+1, total)
		}
		first := map[int64]float64{}
		for _, r := range recs {
			if r.Event == "step" && r.phase == 0 {
				first[r.Step] = r.Loss
			}
		}
		seen := map[int64]bool{}
		for _, r := range recs {
			if l, ok := first[r.Step]; ok && r.Event == "step" && r.phase == 1 && !seen[r.Step] {
				seen[r.Step] = true
				rep.Reapplied++
				if l == r.Loss {
					rep.Reproduced++
				}
			}
		}
	} else {
		gaps(0, 1, total)
	}
	// The last generation that trained: every rank applied the last step
	// with the same loss.
	for _, r := range recs {
		if r.Event == "step" && r.phase == last {
			rep.FinalGen = max(rep.FinalGen, r.Gen)
		}
	}
	ranks := map[int]float64{}
	for _, r := range recs {
		if r.Event == "step" && r.phase == last && r.Gen == rep.FinalGen && r.Step == total {
			ranks[r.Rank] = r.Loss
			rep.FinalLoss = r.Loss
		}
	}
	rep.FinalRanks = len(ranks)
	want := 0
	for _, r := range recs {
		if r.Gen == rep.FinalGen && r.phase == last && r.Event == "sync" {
			want++
		}
	}
	if ids, ok := members[rep.FinalGen]; ok {
		want = len(ids)
	}
	if len(ranks) == 0 {
		fail("no rank of the last generation (%d) applied the last step %d", rep.FinalGen, total)
	} else if len(ranks) < want {
		fail("%d of the %d ranks of the last generation (%d) applied the last step %d", len(ranks), want, rep.FinalGen, total)
	}
	return rep, errors.Join(errs...)
}
