package worker

import (
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/ringtrain/ringtrain/cluster"
	"github.com/ringtrain/ringtrain/internal/transcript"
)

// TestCoreTranscripts replays testdata/core_*.txt: each unindented line is an
// input to a Core, the indented lines after it are the actions it returned.
// Run with -rewrite to regenerate the expected output, then review the diff.
//
// Commands (the core is worker w1 at w1:7070):
//
//	gen N MEMBER[@ADDR] ...     GenerationSeen (ADDR defaults to MEMBER:7070)
//	stop                        StopRequested
//	done                        RunDone
//	steps S0 S1 ...             StepsAgreed
//	synced                      Synced
//	step N [leave] [last]       StepDone
//	fail [suspect=ID] MSG...    RingFailed
//	final                       FinalWritten
//	state                       prints the core's view
func TestCoreTranscripts(t *testing.T) {
	transcript.Run(t, "testdata/core_*.txt", replay)
}

func replay(t *testing.T, script string) string {
	t.Helper()
	core := NewCore("w1", "w1:7070")
	return transcript.Replay(script, func(line int, cmd string, args []string, emit func(string)) {
		atoi := func(s string) int64 {
			n, err := strconv.ParseInt(s, 10, 64)
			if err != nil {
				t.Fatalf("line %d: %q: %v", line, s, err)
			}
			return n
		}
		var acts []Action
		switch cmd {
		case "gen":
			g := cluster.Generation{Gen: uint64(atoi(args[0]))}
			for _, m := range args[1:] {
				id, addr, ok := strings.Cut(m, "@")
				if !ok {
					addr = id + ":7070"
				}
				g.Members = append(g.Members, cluster.Member{ID: id, Addr: addr})
			}
			acts = core.Step(GenerationSeen{Gen: g})
		case "stop":
			acts = core.Step(StopRequested{})
		case "done":
			acts = core.Step(RunDone{})
		case "steps":
			var s []int64
			for _, a := range args {
				s = append(s, atoi(a))
			}
			acts = core.Step(StepsAgreed{Steps: s})
		case "synced":
			acts = core.Step(Synced{})
		case "step":
			in := StepDone{Step: atoi(args[0])}
			for _, a := range args[1:] {
				in.Leave = in.Leave || a == "leave"
				in.Done = in.Done || a == "last"
			}
			acts = core.Step(in)
		case "fail":
			in := RingFailed{}
			var msg []string
			for _, a := range args {
				if s, ok := strings.CutPrefix(a, "suspect="); ok {
					in.Suspect = s
				} else {
					msg = append(msg, a)
				}
			}
			in.Err = strings.Join(msg, " ")
			acts = core.Step(in)
		case "final":
			acts = core.Step(FinalWritten{})
		case "state":
			g, r := core.Generation()
			emit(fmt.Sprintf("phase=%s gen=%d rank=%d", core.Phase(), g.Gen, r))
		default:
			t.Fatalf("line %d: unknown command %q", line, cmd)
		}
		for _, a := range acts {
			emit(formatAction(a))
		}
	})
}

func formatAction(a Action) string {
	switch a := a.(type) {
	case Join:
		return fmt.Sprintf("join gen %d rank %d", a.Gen.Gen, a.Rank)
	case Sync:
		return fmt.Sprintf("sync from %d", a.From)
	case Train:
		return fmt.Sprintf("train vote=%v", a.Vote)
	case EndGeneration:
		return fmt.Sprintf("end generation (%s)", a.Reason)
	case Report:
		return fmt.Sprintf("report gen %d suspect=%q err=%q", a.Gen, a.Suspect, a.Err)
	case Finish:
		return "finish"
	case Exit:
		return "exit " + a.Reason
	}
	return fmt.Sprintf("%T", a)
}
