package worker

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/allreduce"
	"github.com/ringtrain/ringtrain/cluster"
	"github.com/ringtrain/ringtrain/dataset"
	"github.com/ringtrain/ringtrain/train"
)

func testState(t *testing.T, layers string) *train.State {
	t.Helper()
	cfg := train.DefaultConfig()
	cfg.Layers = layers
	st, err := train.NewState(cfg, &dataset.Set{N: 1000, Dim: 8, Classes: 3})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func TestCheckState(t *testing.T) {
	st := testState(t, "8-6-3")
	at := func(step int64, edit func([]float32) []float32) []float32 {
		st.Step = step
		v := st.FlatState()
		if edit != nil {
			v = edit(v)
		}
		return v
	}
	n := st.FlatLen()
	lim := stateLimits{Len: n, Stated: 40, Total: st.TotalSteps, Reach: 40}
	for _, tc := range []struct {
		name string
		v    []float32
		l    stateLimits
		want string
	}{
		{"good", at(40, nil), lim, ""},
		{"no reach bound", at(40, nil), stateLimits{Len: n, Stated: 40, Total: st.TotalSteps, Reach: -1}, ""},
		{"too short", at(40, func(v []float32) []float32 { return v[1:] }), lim, fmt.Sprintf("%d values, want %d", n-1, n)},
		{"too long", at(40, func(v []float32) []float32 { return append([]float32{0}, v...) }), lim, fmt.Sprintf("%d values, want %d", n+1, n)},
		{"negative step", at(-5, nil), stateLimits{Len: n, Stated: -5, Total: st.TotalSteps, Reach: -1}, "negative step -5"},
		{"beyond the run", at(st.TotalSteps+1, nil), stateLimits{Len: n, Stated: st.TotalSteps + 1, Total: st.TotalSteps, Reach: -1},
			fmt.Sprintf("beyond the run's last step %d", st.TotalSteps)},
		{"not the stated step", at(41, nil), lim, "step 41, but it stated step 40"},
		{"beyond what the run can have trained", at(40, nil), stateLimits{Len: n, Stated: 40, Total: st.TotalSteps, Reach: 39},
			"step 40 is beyond step 39"},
		{"NaN parameter", at(40, func(v []float32) []float32 { v[3] = float32(math.NaN()); return v }), lim, "value 3 of"},
		{"infinite optimizer state", at(40, func(v []float32) []float32 { v[n-3] = float32(math.Inf(-1)); return v }), lim,
			fmt.Sprintf("value %d of %d is -Inf", n-3, n-2)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := checkState(tc.v, tc.l)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one containing %q", err, tc.want)
			}
		})
	}
	if got := stateStep(at(1234567890123, nil)); got != 1234567890123 {
		t.Fatalf("stateStep = %d", got)
	}
}

func TestReach(t *testing.T) {
	for _, tc := range []struct {
		every                     int
		checkpoint, progress, own int64
		want                      int64
	}{
		{0, 500, 600, 700, -1},
		{500, 0, 0, 0, 1000},
		{500, 1000, 1200, 900, 2200},
		{500, 1500, 1200, 900, 2500},
		{100, 0, 0, 730, 930},
	} {
		if got := reach(tc.every, tc.checkpoint, tc.progress, tc.own); got != tc.want {
			t.Errorf("reach(%d, %d, %d, %d) = %d, want %d", tc.every, tc.checkpoint, tc.progress, tc.own, got, tc.want)
		}
	}
}

// onRing runs f on every rank of an in-memory ring of generation 1 whose
// members are w0, w1, ….
func onRing(t *testing.T, n int, f func(ctx context.Context, cur *gen) error) []error {
	t.Helper()
	net := allreduce.NewMemNetwork()
	addrs := make([]string, n)
	var members []cluster.Member
	for i := range addrs {
		addrs[i] = fmt.Sprintf("mem-%d", i)
		members = append(members, cluster.Member{ID: fmt.Sprintf("w%d", i), Addr: addrs[i]})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	trs := make([]allreduce.Transport, n)
	for i := range trs {
		trs[i] = net.Transport(addrs[i])
		defer trs[i].Close()
	}
	errs := make([]error, n)
	var wg sync.WaitGroup
	for r := range n {
		wg.Go(func() {
			ring, err := allreduce.NewRing(ctx, trs[r], allreduce.Config{RunID: "t", Generation: 1, Members: addrs, Rank: r, PeerTimeout: 5 * time.Second})
			if err != nil {
				errs[r] = err
				return
			}
			defer ring.Close()
			errs[r] = f(ctx, &gen{g: cluster.Generation{Gen: 1, Members: members}, rank: r, ring: ring})
		})
	}
	wg.Wait()
	return errs
}

// A rank whose state has another length is refused when the ranks agree on
// their steps, before any state moves, naming it; the suspect of the
// failure report is that rank.
func TestAgreeStepsRefusesAnotherStateLength(t *testing.T) {
	ws := []*Worker{{st: testState(t, "8-6-3")}, {st: testState(t, "8-6-3")}, {st: testState(t, "8-5-3")}}
	errs := onRing(t, 3, func(ctx context.Context, cur *gen) error {
		_, err := ws[cur.rank].agreeSteps(ctx, cur)
		if err != nil {
			if f := ws[cur.rank].failure(cur, err).(RingFailed); f.Suspect != "w2" && cur.rank != 2 {
				return fmt.Errorf("suspect %q, want w2 (%w)", f.Suspect, err)
			}
		}
		return err
	})
	for r, err := range errs[:2] {
		var se *StateError
		if !errors.As(err, &se) || !errors.Is(err, ErrBadState) || se.Rank != 2 || se.ID != "w2" {
			t.Fatalf("rank %d: %v, want a refusal naming rank 2 (w2)", r, err)
		}
	}
	if errs[2] == nil {
		t.Fatal("rank 2 agreed with ranks of another state length")
	}
	// The same lengths agree.
	ws[2] = &Worker{st: testState(t, "8-6-3")}
	ws[1].st.Step = 7
	errs = onRing(t, 3, func(ctx context.Context, cur *gen) error {
		steps, err := ws[cur.rank].agreeSteps(ctx, cur)
		if err == nil && (len(steps) != 3 || steps[1] != 7) {
			err = fmt.Errorf("steps %v", steps)
		}
		return err
	})
	for r, err := range errs {
		if err != nil {
			t.Fatalf("rank %d: %v", r, err)
		}
	}
}

// A received state with a non-finite value, or a step other than the one
// its sender stated, is refused naming the sender, and the receiver keeps
// its own state.
func TestSyncRefusesABadState(t *testing.T) {
	for name, corrupt := range map[string]func(st *train.State){
		"nan":  func(st *train.State) { st.Net.Params[2] = float32(math.NaN()) },
		"step": func(st *train.State) { st.Step = 99 },
	} {
		t.Run(name, func(t *testing.T) {
			recv, send := testState(t, "8-6-3"), testState(t, "8-6-3")
			send.Step = 12
			corrupt(send)
			before := recv.ParamsSHA256()
			w := &Worker{st: recv}
			received := make(chan struct{})
			errs := onRing(t, 2, func(ctx context.Context, cur *gen) error {
				cur.steps = []int64{0, 12} // as stated when the ranks agreed
				if cur.rank == 1 {
					err := cur.ring.Broadcast(ctx, send.FlatState(), 1)
					select { // the ring stays open until the receiver is done, as a training sender's does
					case <-received:
					case <-ctx.Done():
					}
					return err
				}
				defer close(received)
				return w.syncFrom(ctx, cur, 1)
			})
			if errs[1] != nil {
				t.Fatalf("sender: %v", errs[1])
			}
			if !errors.Is(errs[0], ErrBadState) || !strings.Contains(errs[0].Error(), "rank 1 (w1)") {
				t.Fatalf("receiver: %v, want a refusal naming rank 1 (w1)", errs[0])
			}
			if recv.ParamsSHA256() != before || recv.Step != 0 {
				t.Fatalf("the refused state was applied (step %d)", recv.Step)
			}
		})
	}
}
