package chaos

// Unit tests of `ringtrain chaos`'s checks. The scenarios themselves run
// against the compose cluster in deploy/chaos_test.go.

import (
	"archive/tar"
	"bytes"
	"fmt"
	"strings"
	"testing"
)

// stepLog builds a step log: a sync of every rank of a ring at from, then
// steps from+1..to on every rank, with a loss that is a function of
// (gen, step) so that the replicas agree.
type stepLog struct {
	lines []string
}

func (l *stepLog) ring(gen uint64, ranks int, from, to int64) *stepLog {
	for r := 0; r < ranks; r++ {
		l.sync(gen, r, from)
	}
	for s := from + 1; s <= to; s++ {
		for r := 0; r < ranks; r++ {
			l.step(gen, r, s)
		}
	}
	return l
}

func (l *stepLog) sync(gen uint64, rank int, step int64) *stepLog {
	l.lines = append(l.lines, fmt.Sprintf(`{"event":"sync","gen":%d,"rank":%d,"step":%d,"from":0}`, gen, rank, step))
	return l
}

func (l *stepLog) step(gen uint64, rank int, step int64) *stepLog {
	return l.stepLoss(gen, rank, step, 1/float64(step))
}

func (l *stepLog) stepLoss(gen uint64, rank int, step int64, loss float64) *stepLog {
	l.lines = append(l.lines, fmt.Sprintf(`{"event":"step","gen":%d,"rank":%d,"step":%d,"loss":%v}`, gen, rank, step, loss))
	return l
}

func (l *stepLog) bytes() []byte { return []byte(strings.Join(l.lines, "\n") + "\n") }

func (l *stepLog) records(t *testing.T) []chaosStep {
	t.Helper()
	recs, bad := parseChaosStepLog(l.bytes(), 0)
	if bad != 0 {
		t.Fatalf("%d bad lines in\n%s", bad, l.bytes())
	}
	return recs
}

var threeThenTwo = map[uint64][]string{2: {"a", "b", "c"}, 3: {"a", "c"}}

func TestChaosStepLogAcceptsARecovery(t *testing.T) {
	// a, b, c train to 50; b dies in step 51, which only a completed; the
	// survivors go on from a's state.
	l := (&stepLog{}).ring(2, 3, 0, 50)
	l.step(2, 0, 51)
	l.sync(3, 0, 51).sync(3, 1, 51)
	for s := int64(52); s <= 100; s++ {
		l.step(3, 0, s).step(3, 1, s)
	}
	rep, err := checkChaosStepLog(l.records(t), threeThenTwo, 100, false, 0)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Workers != 3 || rep.Applied != 100 || rep.FinalGen != 3 || rep.FinalRanks != 2 || rep.FinalLoss != 0.01 {
		t.Fatalf("report %+v", rep)
	}
}

func TestChaosStepLogFindsFaults(t *testing.T) {
	for _, tc := range []struct {
		name string
		log  func() *stepLog
		want string
	}{
		{"gap in a worker", func() *stepLog {
			l := (&stepLog{}).ring(2, 3, 0, 10)
			for s := int64(12); s <= 20; s++ { // every rank skips step 11
				l.step(2, 0, s).step(2, 1, s).step(2, 2, s)
			}
			return l
		}, "steps 11..11 skipped"},
		{"repeat in a worker", func() *stepLog {
			return (&stepLog{}).ring(2, 3, 0, 20).step(2, 1, 20)
		}, "applied step 20 twice"},
		{"state transfer backwards", func() *stepLog {
			// the next ring starts from 15 although a and c were at 20:
			// steps 16..20 are applied twice.
			return (&stepLog{}).ring(2, 3, 0, 20).ring(3, 2, 15, 30)
		}, "moved it back from step 20"},
		{"replicas differ", func() *stepLog {
			l := (&stepLog{}).ring(2, 3, 0, 9)
			return l.step(2, 0, 10).step(2, 1, 10).stepLoss(2, 2, 10, 0.5)
		}, "the replicas differ"},
		{"unfinished", func() *stepLog {
			return (&stepLog{}).ring(2, 3, 0, 30)
		}, "never applied"},
		{"a rank of the last ring did not finish", func() *stepLog {
			l := (&stepLog{}).ring(2, 3, 0, 39)
			return l.step(2, 0, 40).step(2, 1, 40)
		}, "2 of the 3 ranks"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			total := int64(20)
			if tc.name == "unfinished" || tc.name == "a rank of the last ring did not finish" {
				total = 40
			}
			_, err := checkChaosStepLog(tc.log().records(t), threeThenTwo, total, false, 0)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestChaosStepLogAcrossAFullRestart(t *testing.T) {
	// The ring trains to 57, every process dies, and the restarted ring
	// (the same generation number: the registrations outlived the kill)
	// resumes from the checkpoint at 40, re-applying 41..57 with the same
	// losses.
	before := (&stepLog{}).ring(2, 3, 0, 57)
	after := (&stepLog{}).ring(2, 3, 40, 100)
	recs, _ := parseChaosStepLog(before.bytes(), 0)
	recs2, _ := parseChaosStepLog(after.bytes(), 1)
	recs = append(recs, recs2...)
	members := map[uint64][]string{2: {"a", "b", "c"}}
	rep, err := checkChaosStepLog(recs, members, 100, true, 40)
	if err != nil {
		t.Fatal(err)
	}
	if rep.ResumedAt != 40 || rep.Reapplied != 17 || rep.Reproduced != 17 || rep.FinalRanks != 3 {
		t.Fatalf("report %+v", rep)
	}
	// Read as one life, the same log is a repeat.
	all, _ := parseChaosStepLog(append(before.bytes(), after.bytes()...), 0)
	if _, err := checkChaosStepLog(all, members, 100, false, 0); err == nil {
		t.Fatal("a backwards resume without a restart passed")
	}
	// Resuming from an older checkpoint than the newest valid one fails.
	if _, err := checkChaosStepLog(recs, members, 100, true, 57); err == nil || !strings.Contains(err.Error(), "resumed at step 40, want 57") {
		t.Fatalf("error %v", err)
	}
}

func TestParseChaosStepLogSkipsTornLines(t *testing.T) {
	b := []byte(`{"event":"sync","gen":2,"rank":0,"step":0,"from":0}` + "\n" + `{"event":"step","gen":2,"ra` + "\n\n")
	recs, bad := parseChaosStepLog(b, 1)
	if len(recs) != 1 || bad != 1 || recs[0].phase != 1 {
		t.Fatalf("records %+v, bad %d", recs, bad)
	}
}

func TestParseGenerationString(t *testing.T) {
	g, ids, ok := parseGenerationString("gen 12 [w1 w2 w3]: joined w3")
	if !ok || g != 12 || strings.Join(ids, ",") != "w1,w2,w3" {
		t.Fatalf("got %d %v %v", g, ids, ok)
	}
	if _, _, ok := parseGenerationString("checkpoint step 200"); ok {
		t.Fatal("parsed a non-generation")
	}
}

func TestNewestCheckpoints(t *testing.T) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	add := func(name, data string) {
		tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg})
		tw.Write([]byte(data))
	}
	add("checkpoints/steps.jsonl", "{}")
	for _, s := range []string{"00000200", "00000400", "00000600"} {
		add("checkpoints/step-"+s+"/model.safetensors", "model "+s)
		add("checkpoints/step-"+s+"/manifest.json", "{}")
	}
	add("checkpoints/.tmp-step-00000800-1/model.safetensors", "partial") // not published
	add("checkpoints/step-00000800/model.safetensors", "no manifest")    // incomplete
	tw.Close()
	newest, prev, model, err := newestCheckpoints(tar.NewReader(&buf))
	if err != nil {
		t.Fatal(err)
	}
	if newest != "step-00000600" || prev != "step-00000400" || string(model) != "model 00000600" {
		t.Fatalf("newest %s prev %s model %q", newest, prev, model)
	}
	c := corruptBytes(model)
	if bytes.Equal(c, model) || len(c) != len(model) || string(model) != "model 00000600" {
		t.Fatalf("corruptBytes: %q from %q", c, model)
	}
}
