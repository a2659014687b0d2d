package cluster

import (
	"fmt"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/ringtrain/ringtrain/train"
)

func TestMemberStatuses(t *testing.T) {
	w := func(id string) WorkerInfo { return WorkerInfo{ID: id, Addr: id + ":1"} }
	gen := Generation{Gen: 3, Members: []Member{{ID: "c", Addr: "c:0"}, {ID: "a", Addr: "a:0"}, {ID: "b", Addr: "b:0"}}}
	for _, tc := range []struct {
		name    string
		g       Generation
		workers []WorkerInfo
		want    string // id/rank/state ...
	}{
		{"empty", Generation{}, nil, ""},
		{"waiting", Generation{}, []WorkerInfo{w("b"), w("a")}, "a/-1/standby b/-1/standby"},
		{"ring in rank order", gen, []WorkerInfo{w("a"), w("b"), w("c")}, "c/0/ring a/1/ring b/2/ring"},
		{"standby after the ring", gen, []WorkerInfo{w("z"), w("a"), w("b"), w("c"), w("d")}, "c/0/ring a/1/ring b/2/ring d/-1/standby z/-1/standby"},
		{"unregistered member failed", gen, []WorkerInfo{w("a"), w("c")}, "c/0/ring a/1/ring b/2/failed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, m := range memberStatuses(tc.g, tc.workers) {
				got = append(got, fmt.Sprintf("%s/%d/%s", m.ID, m.Rank, m.State))
				wantAddr := m.ID + ":1"
				if m.State == MemberFailed {
					wantAddr = m.ID + ":0"
				}
				if m.Addr != wantAddr {
					t.Errorf("%s: addr %q, want %q", m.ID, m.Addr, wantAddr)
				}
			}
			if s := strings.Join(got, " "); s != tc.want {
				t.Errorf("got %q, want %q", s, tc.want)
			}
		})
	}
}

// TestReadSnapshot reads a run from etcd as the dashboard and `ringtrain
// status` do: empty, then with a spec, a ring with a gone member and a
// standby, progress, a checkpoint, events and the done summary.
func TestReadSnapshot(t *testing.T) {
	e := startEtcd(t)
	c := newTestClient(t, e, "snap")
	ctx := testCtx(t, 30*time.Second)
	s, err := ReadSnapshot(ctx, c, 10)
	if err != nil {
		t.Fatal(err)
	}
	if s.Run != "snap" || s.State != RunWaiting || s.Spec != nil || s.Generation.Gen != 0 || s.Leader != "" ||
		len(s.Members) != 0 || s.Progress != nil || s.Checkpoint != nil || s.Done != nil || s.Events == nil {
		t.Fatalf("empty run: %+v", s)
	}

	spec := RunSpec{MinWorkers: 1}
	if _, err := c.PutSpecIfAbsent(ctx, spec); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"w1", "w2"} {
		r, err := c.Register(ctx, WorkerInfo{ID: id, Addr: id + ":7070", Started: time.Now()}, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close() })
	}
	// A guard that holds once: no generation yet.
	guard := clientv3.Compare(clientv3.CreateRevision(c.Key(KeyGeneration)), "=", 0)
	g := Generation{Gen: 4, Members: []Member{{ID: "w2", Addr: "w2:7070"}, {ID: "w9", Addr: "w9:7070"}}}
	if won, err := c.PutGeneration(ctx, g, guard); err != nil || !won {
		t.Fatalf("put generation: won=%v err=%v", won, err)
	}
	if won, err := c.PutGeneration(ctx, Generation{Gen: 5}, guard); err != nil || won {
		t.Fatalf("put generation with a guard that fails: won=%v err=%v", won, err)
	}
	if err := c.PublishProgress(ctx, "w1", Progress{Gen: 4, Step: 50}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.PublishCheckpoint(ctx, CheckpointRef{Step: 40, Dir: "step-00000040", Gen: 4}); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := c.AddEvent(ctx, Event{Kind: "joined", Who: fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if s, err = ReadSnapshot(ctx, c, 2); err != nil {
		t.Fatal(err)
	}
	var members []string
	for _, m := range s.Members {
		members = append(members, fmt.Sprintf("%s/%d/%s", m.ID, m.Rank, m.State))
	}
	if got, want := strings.Join(members, " "), "w2/0/ring w9/1/failed w1/-1/standby"; got != want {
		t.Errorf("members %q, want %q", got, want)
	}
	if s.State != RunTraining || s.Spec == nil || s.Generation.Gen != 4 || s.Progress == nil || s.Progress.Step != 50 ||
		s.Checkpoint == nil || s.CheckpointPath != "step-00000040" {
		t.Errorf("snapshot: %+v", s)
	}
	if len(s.Events) != 2 || s.Events[0].Who != "2" || s.Events[1].Who != "1" {
		t.Errorf("events (want the newest 2, newest first): %+v", s.Events)
	}
	if s, err = ReadSnapshot(ctx, c, 0); err != nil || len(s.Events) != 0 {
		t.Fatalf("no events asked: %+v, %v", s.Events, err)
	}

	if _, err := c.MarkDone(ctx, train.Summary{Step: 60}); err != nil {
		t.Fatal(err)
	}
	if s, err = ReadSnapshot(ctx, c, 0); err != nil || s.State != RunDone || s.Done == nil || s.Done.Step != 60 {
		t.Fatalf("done run: state %q done %+v, %v", s.State, s.Done, err)
	}
}
