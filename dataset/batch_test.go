package dataset

import (
	"fmt"
	"slices"
	"sync"
	"testing"
)

func TestStepsPerEpoch(t *testing.T) {
	for _, tt := range []struct{ n, batch, want int }{
		{60000, 256, 234}, {60000, 100, 600}, {10, 3, 3}, {3, 10, 0}, {0, 1, 0}, {10, 0, 0}, {10, 10, 1},
	} {
		if got := StepsPerEpoch(tt.n, tt.batch); got != tt.want {
			t.Errorf("StepsPerEpoch(%d, %d) = %d, want %d", tt.n, tt.batch, got, tt.want)
		}
	}
}

func TestCursorAt(t *testing.T) {
	for _, tt := range []struct {
		step int64
		spe  int
		want Cursor
	}{
		{0, 10, Cursor{0, 0}}, {9, 10, Cursor{0, 9}}, {10, 10, Cursor{1, 0}}, {1234, 234, Cursor{5, 64}},
	} {
		if got := CursorAt(tt.step, tt.spe); got != tt.want {
			t.Errorf("CursorAt(%d, %d) = %+v, want %+v", tt.step, tt.spe, got, tt.want)
		}
	}
}

func TestBatchIndicesInOrder(t *testing.T) {
	got := BatchIndices(10, 42, 3, 2, 3, false)
	if !slices.Equal(got, []int{6, 7, 8}) {
		t.Fatalf("got %v, want [6 7 8]", got)
	}
}

func TestBatchIndicesPartition(t *testing.T) {
	const n, batch = 103, 10 // 10 steps, 3 examples dropped
	for _, shuffle := range []bool{false, true} {
		seen := make([]int, n)
		for s := range StepsPerEpoch(n, batch) {
			for _, i := range BatchIndices(n, 7, 1, s, batch, shuffle) {
				seen[i]++
			}
		}
		total := 0
		for i, c := range seen {
			if c > 1 {
				t.Fatalf("shuffle=%v: example %d used %d times in one epoch", shuffle, i, c)
			}
			total += c
		}
		if total != 100 {
			t.Fatalf("shuffle=%v: %d examples used, want 100", shuffle, total)
		}
	}
}

func TestBatchIndicesDeterministic(t *testing.T) {
	const n, batch = 1000, 32
	a := BatchIndices(n, 1, 2, 5, batch, true)
	// Evict the cache with other keys, then recompute.
	for e := range 2 * permCacheSize {
		BatchIndices(n, 99, e, 0, batch, true)
	}
	if b := BatchIndices(n, 1, 2, 5, batch, true); !slices.Equal(a, b) {
		t.Fatalf("same (seed, epoch, step) gave %v then %v", a, b)
	}
	if c := BatchIndices(n, 1, 3, 5, batch, true); slices.Equal(a, c) {
		t.Fatalf("epochs 2 and 3 gave the same batch %v", a)
	}
	if d := BatchIndices(n, 2, 2, 5, batch, true); slices.Equal(a, d) {
		t.Fatalf("seeds 1 and 2 gave the same batch %v", a)
	}
	if e := BatchIndices(n, 1, 2, 5, batch, false); slices.Equal(a, e) {
		t.Fatalf("shuffle made no difference: %v", a)
	}
	// The returned slice is the caller's.
	a[0] = -1
	if b := BatchIndices(n, 1, 2, 5, batch, true); b[0] == -1 {
		t.Fatal("BatchIndices returned a slice aliasing its cache")
	}
}

// TestPermutationGolden pins the shuffle: checkpoints resumed by another
// build must see the same batches. Change it only with a format bump.
func TestPermutationGolden(t *testing.T) {
	got := Permutation(10, 42, 0)
	want := []int{6, 2, 5, 3, 4, 7, 0, 1, 9, 8}
	if !slices.Equal(got, want) {
		t.Fatalf("Permutation(10, 42, 0) = %#v, want %#v", got, want)
	}
}

func TestBatchIndicesConcurrent(t *testing.T) {
	const n, batch = 500, 50
	want := make([][]int, StepsPerEpoch(n, batch))
	for s := range want {
		want[s] = BatchIndices(n, 3, 0, s, batch, true)
	}
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for s := range want {
				// Alternate epochs to make workers fight over the cache.
				BatchIndices(n, 3, w%3+1, s, batch, true)
				if got := BatchIndices(n, 3, 0, s, batch, true); !slices.Equal(got, want[s]) {
					t.Errorf("worker %d step %d: got %v, want %v", w, s, got, want[s])
				}
			}
		}()
	}
	wg.Wait()
}

func TestBatchIndicesPanics(t *testing.T) {
	for _, args := range [][3]int{{10, 4, 3}, {10, 4, -1}, {3, 4, 0}} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("BatchIndices(n=%d, batch=%d, step=%d) did not panic", args[0], args[1], args[2])
				}
			}()
			BatchIndices(args[0], 0, 0, args[2], args[1], true)
		}()
	}
}

func TestShardRange(t *testing.T) {
	tests := []struct {
		batch, world int
		want         [][2]int
	}{
		{10, 1, [][2]int{{0, 10}}},
		{10, 3, [][2]int{{0, 4}, {4, 7}, {7, 10}}},
		{12, 3, [][2]int{{0, 4}, {4, 8}, {8, 12}}},
		{2, 4, [][2]int{{0, 1}, {1, 2}, {2, 2}, {2, 2}}},
		{0, 2, [][2]int{{0, 0}, {0, 0}}},
	}
	for _, tt := range tests {
		for r, w := range tt.want {
			if lo, hi := ShardRange(tt.batch, r, tt.world); lo != w[0] || hi != w[1] {
				t.Errorf("ShardRange(%d, %d, %d) = [%d,%d), want [%d,%d)", tt.batch, r, tt.world, lo, hi, w[0], w[1])
			}
		}
	}
}

// TestShardRangeCovers checks the properties for many sizes: shards are
// contiguous, in rank order, cover [0, batch) exactly once, and differ in
// size by at most one.
func TestShardRangeCovers(t *testing.T) {
	for batch := range 40 {
		for world := 1; world <= 12; world++ {
			t.Run(fmt.Sprintf("%d/%d", batch, world), func(t *testing.T) {
				next, smallest, largest := 0, batch, 0
				for r := range world {
					lo, hi := ShardRange(batch, r, world)
					if lo != next || hi < lo {
						t.Fatalf("rank %d: [%d,%d), want to start at %d", r, lo, hi, next)
					}
					next = hi
					smallest, largest = min(smallest, hi-lo), max(largest, hi-lo)
				}
				if next != batch {
					t.Fatalf("shards end at %d, want %d", next, batch)
				}
				if largest-smallest > 1 {
					t.Fatalf("shard sizes range from %d to %d", smallest, largest)
				}
			})
		}
	}
}
