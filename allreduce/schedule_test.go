package allreduce

import (
	"fmt"
	"testing"
)

func TestScheduleTable(t *testing.T) {
	tests := []struct {
		n, rank int
		want    []Step
	}{
		{n: 1, rank: 0, want: []Step{}},
		{n: 2, rank: 0, want: []Step{
			{Phase: ReduceScatter, SendChunk: 0, RecvChunk: 1, To: 1, From: 1},
			{Phase: AllGather, SendChunk: 1, RecvChunk: 0, To: 1, From: 1},
		}},
		{n: 3, rank: 1, want: []Step{
			{Phase: ReduceScatter, SendChunk: 1, RecvChunk: 0, To: 2, From: 0},
			{Phase: ReduceScatter, SendChunk: 0, RecvChunk: 2, To: 2, From: 0},
			{Phase: AllGather, SendChunk: 2, RecvChunk: 1, To: 2, From: 0},
			{Phase: AllGather, SendChunk: 1, RecvChunk: 0, To: 2, From: 0},
		}},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("n=%d/rank=%d", tt.n, tt.rank), func(t *testing.T) {
			got := Schedule(tt.n, tt.rank)
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("Schedule(%d, %d) = %v, want %v", tt.n, tt.rank, got, tt.want)
			}
		})
	}
}

// TestScheduleSimulated runs the schedule of every rank in lockstep on sets of
// contributions and checks the ring's invariants for n = 1..16.
func TestScheduleSimulated(t *testing.T) {
	for n := 1; n <= 16; n++ {
		t.Run(fmt.Sprintf("n=%d", n), func(t *testing.T) {
			scheds := make([][]Step, n)
			for r := range n {
				scheds[r] = Schedule(n, r)
				if len(scheds[r]) != 2*(n-1) {
					t.Fatalf("rank %d: %d steps, want %d", r, len(scheds[r]), 2*(n-1))
				}
				for i, st := range scheds[r] {
					wantPhase := ReduceScatter
					if i >= n-1 {
						wantPhase = AllGather
					}
					if st.Phase != wantPhase || st.To != (r+1)%n || st.From != (r-1+n)%n {
						t.Fatalf("rank %d step %d = %+v: want phase %v, to %d, from %d", r, i, st, wantPhase, (r+1)%n, (r-1+n)%n)
					}
					if i > 0 && st.SendChunk != scheds[r][i-1].RecvChunk {
						t.Fatalf("rank %d step %d sends chunk %d, not the chunk %d received at step %d", r, i, st.SendChunk, scheds[r][i-1].RecvChunk, i-1)
					}
				}
			}
			// have[r][c] = set of ranks whose contribution rank r holds in chunk c.
			have := make([][]map[int]bool, n)
			for r := range n {
				have[r] = make([]map[int]bool, n)
				for c := range n {
					have[r][c] = map[int]bool{r: true}
				}
			}
			adds := make([]int, n) // reductions per chunk, over all ranks
			for step := 0; step < 2*(n-1); step++ {
				sent := make([]map[int]bool, n)
				for r := range n {
					sent[r] = clone(have[r][scheds[r][step].SendChunk])
				}
				for r := range n {
					st := scheds[r][step]
					from := (r - 1 + n) % n
					if scheds[from][step].SendChunk != st.RecvChunk {
						t.Fatalf("step %d: rank %d expects chunk %d but rank %d sends chunk %d", step, r, st.RecvChunk, from, scheds[from][step].SendChunk)
					}
					in := sent[from]
					if st.Phase == ReduceScatter {
						for k := range in {
							if have[r][st.RecvChunk][k] {
								t.Fatalf("step %d rank %d: contribution of rank %d added twice to chunk %d", step, r, k, st.RecvChunk)
							}
							have[r][st.RecvChunk][k] = true
						}
						adds[st.RecvChunk]++
					} else {
						if len(in) != n {
							t.Fatalf("step %d rank %d: all-gather of chunk %d carries %d of %d contributions", step, r, st.RecvChunk, len(in), n)
						}
						have[r][st.RecvChunk] = clone(in)
					}
				}
				if step == n-2 {
					for r := range n {
						if c := (r + 1) % n; len(have[r][c]) != n {
							t.Fatalf("after reduce-scatter rank %d holds %d contributions of chunk %d, want %d", r, len(have[r][c]), c, n)
						}
					}
				}
			}
			for c, a := range adds {
				if a != n-1 {
					t.Errorf("chunk %d reduced %d times, want %d (each chunk exactly once per rank but its owner)", c, a, n-1)
				}
			}
			for r := range n {
				for c := range n {
					if len(have[r][c]) != n {
						t.Errorf("rank %d ends with %d of %d contributions in chunk %d", r, len(have[r][c]), n, c)
					}
				}
			}
		})
	}
}

func clone(m map[int]bool) map[int]bool {
	c := make(map[int]bool, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

func TestSchedulePanicsOnBadArgs(t *testing.T) {
	for _, a := range [][2]int{{0, 0}, {3, 3}, {3, -1}} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Schedule(%d, %d) did not panic", a[0], a[1])
				}
			}()
			Schedule(a[0], a[1])
		}()
	}
}

func TestSegmentsAndParts(t *testing.T) {
	for _, l := range []int{0, 1, 2, 7, 8, 9, 1000003} {
		for n := 1; n <= 8; n++ {
			next := 0
			for c := range n {
				s := segment(l, n, c)
				if s.off != next {
					t.Fatalf("l=%d n=%d: segment %d starts at %d, want %d", l, n, c, s.off, next)
				}
				if s.len != l/n && s.len != l/n+1 {
					t.Fatalf("l=%d n=%d: segment %d has %d elements", l, n, c, s.len)
				}
				k := partsFor(segment(l, n, 0).len, 4096/4)
				pnext := s.off
				for j := range k {
					p := part(s, k, j)
					if p.off != pnext || p.len*4 > 4096 {
						t.Fatalf("l=%d n=%d seg %d: part %d = %+v", l, n, c, j, p)
					}
					pnext += p.len
				}
				if pnext != s.off+s.len {
					t.Fatalf("l=%d n=%d seg %d: parts end at %d, want %d", l, n, c, pnext, s.off+s.len)
				}
				next += s.len
			}
			if next != l {
				t.Fatalf("l=%d n=%d: segments cover %d", l, n, next)
			}
		}
	}
}
