package coordinator

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/cluster"
	"github.com/ringtrain/ringtrain/internal/transcript"
)

// TestCoreTranscripts replays testdata/*.txt: each unindented line is an
// input to a Core, the indented lines after it are the actions it returned.
// Run with -rewrite to regenerate the expected output, then review the diff.
//
// Commands:
//
//	config [id=c1] [min=1] [max=0] [debounce=2] [maxdebounce=8] [faildelay=6]
//	up ID [addr=HOST:PORT] [gossip=HOST:PORT] [started=N]  WorkerUp (addr ID:7000, started N s)
//	down ID                                WorkerDown
//	snapshot ID[@N] ...                    WorkersSnapshot
//	failed NAME [addr=A] / alive NAME      GossipFailed (gossip address A) / GossipAlive
//	leader [gen=N] [members=a,b]           BecameLeader (no gen: none in etcd)
//	ringfail REPORTER gen=N [suspect=ID]   RingFailed; prints "probe ADDR" when ProbeTarget names one
//	portclosed NAME gen=N                  PortClosed
//	lost                                   LostLeadership
//	tick [N]                               N Ticks
//	state                                  prints the core's view
func TestCoreTranscripts(t *testing.T) {
	transcript.Run(t, "testdata/core_*.txt", replay)
}

func replay(t *testing.T, script string) string {
	t.Helper()
	var core *Core
	return transcript.Replay(script, func(line int, cmd string, args []string, emit func(string)) {
		kv := map[string]string{}
		var pos []string
		for _, a := range args {
			if k, v, ok := strings.Cut(a, "="); ok {
				kv[k] = v
			} else {
				pos = append(pos, a)
			}
		}
		num := func(k string, def int) int {
			if v, ok := kv[k]; ok {
				n, err := strconv.Atoi(v)
				if err != nil {
					t.Fatalf("line %d: %s=%q: %v", line, k, v, err)
				}
				return n
			}
			return def
		}
		if cmd != "config" && core == nil {
			t.Fatalf("line %d: config first", line)
		}
		var acts []Action
		switch cmd {
		case "config":
			id := kv["id"]
			if id == "" {
				id = "c1"
			}
			core = NewCore(CoreConfig{ID: id, MinWorkers: num("min", 1), MaxWorkers: num("max", 0),
				DebounceTicks: num("debounce", 2), MaxDebounceTicks: num("maxdebounce", 8), FailureDelayTicks: num("faildelay", 6)})
		case "up":
			addr := kv["addr"]
			if addr == "" {
				addr = pos[0] + ":7000"
			}
			acts = core.Step(WorkerUp{Info: cluster.WorkerInfo{ID: pos[0], Addr: addr, Gossip: kv["gossip"], Started: time.Unix(int64(num("started", 1)), 0)}})
		case "down":
			acts = core.Step(WorkerDown{ID: pos[0]})
		case "snapshot":
			var ws []cluster.WorkerInfo
			for _, p := range pos {
				id, st, _ := strings.Cut(p, "@")
				n := 1
				if st != "" {
					n, _ = strconv.Atoi(st)
				}
				ws = append(ws, cluster.WorkerInfo{ID: id, Addr: id + ":7000", Started: time.Unix(int64(n), 0)})
			}
			acts = core.Step(WorkersSnapshot{Workers: ws})
		case "failed":
			acts = core.Step(GossipFailed{Name: pos[0], Addr: kv["addr"]})
		case "alive":
			acts = core.Step(GossipAlive{Name: pos[0]})
		case "leader":
			in := BecameLeader{}
			if g, ok := kv["gen"]; ok {
				in.Found = true
				n, _ := strconv.ParseUint(g, 10, 64)
				in.Current.Gen = n
				if m := kv["members"]; m != "" {
					for _, id := range strings.Split(m, ",") {
						in.Current.Members = append(in.Current.Members, cluster.Member{ID: id, Addr: id + ":7000"})
					}
				}
			}
			acts = core.Step(in)
		case "ringfail":
			f := cluster.Failure{Reporter: pos[0], Gen: uint64(num("gen", 0)), Suspect: kv["suspect"], Error: "recv timeout"}
			acts = core.Step(RingFailed{Failure: f})
			if addr, ok := core.ProbeTarget(f); ok {
				defer emit("probe " + addr)
			}
		case "portclosed":
			acts = core.Step(PortClosed{Name: pos[0], Gen: uint64(num("gen", 0))})
		case "lost":
			acts = core.Step(LostLeadership{})
		case "tick":
			for range max(num("n", 0), 1, firstInt(pos)) {
				acts = append(acts, core.Step(Tick{})...)
			}
		case "state":
			ws, failed, suspected := core.Registered()
			var parts []string
			for _, w := range ws {
				s := w.ID
				if failed[w.ID] {
					s += "(failed)"
				}
				if suspected[w.ID] {
					s += "(suspected)"
				}
				parts = append(parts, s)
			}
			g, found := core.Generation()
			emit(fmt.Sprintf("leader=%v registered=[%s] published=%s found=%v", core.IsLeader(), strings.Join(parts, " "), g, found))
		default:
			t.Fatalf("line %d: unknown command %q", line, cmd)
		}
		for _, a := range acts {
			emit(formatAction(a))
		}
	})
}

func firstInt(pos []string) int {
	if len(pos) == 0 {
		return 0
	}
	n, _ := strconv.Atoi(pos[0])
	return n
}

func formatAction(a Action) string {
	switch a := a.(type) {
	case PublishGeneration:
		var addrs []string
		for _, m := range a.Gen.Members {
			if m.Addr != m.ID+":7000" {
				addrs = append(addrs, m.ID+"="+m.Addr)
			}
		}
		s := fmt.Sprintf("publish %s reason=%q", a.Gen, a.Gen.Reason)
		if len(addrs) > 0 {
			s += " addrs=" + strings.Join(addrs, ",")
		}
		return s
	case RecordEvent:
		return fmt.Sprintf("event %s %s gen=%d %q", a.Event.Kind, a.Event.Who, a.Event.Gen, a.Event.Detail)
	}
	return fmt.Sprintf("%T", a)
}
