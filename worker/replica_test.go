package worker

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/allreduce"
	"github.com/ringtrain/ringtrain/dataset"
	"github.com/ringtrain/ringtrain/train"
)

// checkAll runs checkReplicas on every rank of an in-memory ring.
func checkAll(t *testing.T, states []*train.State, step int64) []error {
	t.Helper()
	n := len(states)
	net := allreduce.NewMemNetwork()
	addrs := make([]string, n)
	for i := range addrs {
		addrs[i] = fmt.Sprintf("mem-%d", i)
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
	for r := 0; r < n; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ring, err := allreduce.NewRing(ctx, trs[r], allreduce.Config{RunID: "t", Generation: 1, Members: addrs, Rank: r, PeerTimeout: 5 * time.Second})
			if err != nil {
				errs[r] = err
				return
			}
			defer ring.Close()
			w := &Worker{st: states[r]}
			errs[r] = w.checkReplicas(ctx, ring, r, n, step)
		}()
	}
	wg.Wait()
	return errs
}

func TestReplicaCheckNamesDivergedRanks(t *testing.T) {
	cfg := train.DefaultConfig()
	cfg.Layers = "8-6-3"
	var states []*train.State
	for r := 0; r < 4; r++ {
		st, err := train.NewState(cfg, &dataset.Set{N: 1000, Dim: 8, Classes: 3})
		if err != nil {
			t.Fatal(err)
		}
		states = append(states, st)
	}
	for r, err := range checkAll(t, states, 100) {
		if err != nil {
			t.Fatalf("identical replicas: rank %d: %v", r, err)
		}
	}
	states[2].Net.Params[5] += 1e-6 // one ulp-scale difference is enough
	for r, err := range checkAll(t, states, 200) {
		if !errors.Is(err, ErrReplicaMismatch) {
			t.Fatalf("rank %d: %v, want ErrReplicaMismatch", r, err)
		}
		if msg := err.Error(); !strings.Contains(msg, "step 200") || !strings.Contains(msg, "[2]") {
			t.Fatalf("rank %d: %q does not name step 200 and rank 2", r, msg)
		}
	}
}
