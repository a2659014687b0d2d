package worker

import (
	"context"
	"slices"
	"sync"
	"testing"

	"go.uber.org/zap/zaptest"

	"github.com/ringtrain/ringtrain/checkpoint"
	"github.com/ringtrain/ringtrain/cluster"
	"github.com/ringtrain/ringtrain/dataset"
	"github.com/ringtrain/ringtrain/train"
)

// refStore records the checkpoints reported.
type refStore struct {
	mu   sync.Mutex
	refs []cluster.CheckpointRef
}

func (s *refStore) ReportCheckpoint(_ context.Context, _ string, ref cluster.CheckpointRef) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refs = append(s.refs, ref)
	return nil
}

func (s *refStore) last(t *testing.T) cluster.CheckpointRef {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.refs) == 0 {
		t.Fatal("no checkpoint reported")
	}
	return s.refs[len(s.refs)-1]
}

// trainSteps applies k optimizer steps with made-up gradients, so that the
// parameters, the optimizer's buffers and the step all change.
func trainSteps(st *train.State, k int) {
	for range k {
		for i := range st.Net.Grads {
			st.Net.Grads[i] = float32(i%7-3) / 10
		}
		st.Apply()
	}
}

// A snapshot writes the state as it was when taken, though training goes on
// while the write runs, and the next snapshot reuses its one copy.
func TestCheckpointSnapshotIsTheStateWhenTaken(t *testing.T) {
	for _, opt := range []string{"momentum", "adam"} {
		t.Run(opt, func(t *testing.T) {
			cfg := train.DefaultConfig()
			cfg.Layers, cfg.Optimizer, cfg.CheckpointDir = "4-3-2", opt, t.TempDir()
			data := &dataset.Set{N: 1000, Dim: 4, Classes: 2}
			st, err := train.NewState(cfg, data)
			if err != nil {
				t.Fatal(err)
			}
			store := &refStore{}
			c := newCheckpointer(checkpointDeps{root: cfg.CheckpointDir, cfg: cfg, data: data, store: store, who: "w0",
				log: zaptest.NewLogger(t), metrics: NewMetrics()})
			hist := &train.History{}
			var snap *train.State
			for _, steps := range []int{3, 2} {
				trainSteps(st, steps)
				hist.AddLoss(st.Step, 0.5)
				want, wantHash := st.FlatState(), st.ParamsSHA256()
				c.Snapshot(1, st, hist)
				trainSteps(st, 4) // while the write runs
				hist.AddLoss(st.Step, 0.25)
				c.Wait()

				if snap != nil && c.snap != snap {
					t.Fatal("a second snapshot built a new copy of the state")
				}
				snap = c.snap
				if c.snap.Net.Grads != nil || &c.snap.Net.Params[0] == &st.Net.Params[0] {
					t.Fatal("the snapshot holds gradients or shares the live parameters")
				}
				ref := store.last(t)
				ck, err := checkpoint.Load(ref.Path(cfg.CheckpointDir))
				if err != nil {
					t.Fatal(err)
				}
				restored, err := train.NewState(cfg, data)
				if err != nil {
					t.Fatal(err)
				}
				if err := restored.Restore(ck); err != nil {
					t.Fatal(err)
				}
				if got := restored.FlatState(); !slices.Equal(got, want) || ref.ParamsSHA256 != wantHash ||
					ck.Manifest.ParamsSHA256 != wantHash {
					t.Fatalf("step %d: the checkpoint differs from the state when the snapshot was taken (sha %s, want %s)",
						ref.Step, ref.ParamsSHA256, wantHash)
				}
				var saved train.History
				saved.Load(ck.Manifest.Metrics)
				if len(saved.Loss) != len(hist.Loss)-1 {
					t.Fatalf("the checkpoint holds %d loss points, want the %d of the snapshot", len(saved.Loss), len(hist.Loss)-1)
				}
			}
		})
	}
}
