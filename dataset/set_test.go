package dataset

import (
	"slices"
	"testing"
)

func testSet() *Set {
	return &Set{
		X:       []float32{0, 1, 10, 11, 20, 21, 30, 31},
		Labels:  []int32{0, 1, 2, 0},
		N:       4,
		Dim:     2,
		Classes: 3,
	}
}

func TestGather(t *testing.T) {
	s := testSet()
	x := make([]float32, 3*2)
	labels := make([]int32, 3)
	idx := []int{3, 0, 2}
	s.Gather(idx, x, labels)
	if !slices.Equal(x, []float32{30, 31, 0, 1, 20, 21}) || !slices.Equal(labels, []int32{0, 0, 2}) {
		t.Fatalf("x = %v, labels = %v", x, labels)
	}
	if allocs := testing.AllocsPerRun(100, func() { s.Gather(idx, x, labels) }); allocs != 0 {
		t.Fatalf("Gather allocates %v times", allocs)
	}
}

func TestGatherPanics(t *testing.T) {
	s := testSet()
	defer func() {
		if recover() == nil {
			t.Fatal("Gather into a short buffer did not panic")
		}
	}()
	s.Gather([]int{0, 1}, make([]float32, 3), make([]int32, 2))
}

func TestSubset(t *testing.T) {
	s := testSet()
	sub := s.Subset(2)
	if sub.N != 2 || sub.Dim != 2 || sub.Classes != 3 || len(sub.X) != 4 || len(sub.Labels) != 2 {
		t.Fatalf("Subset(2) = %+v", sub)
	}
	sub.X[0] = 99 // a view
	if s.X[0] != 99 {
		t.Fatal("Subset copied instead of sharing")
	}
	_ = append(sub.X, -1) // capped, so the parent is untouched
	if s.X[4] != 20 {
		t.Fatal("append to a Subset wrote into its parent")
	}
	if all := s.Subset(100); all.N != 4 {
		t.Fatalf("Subset(100).N = %d, want 4", all.N)
	}
}
