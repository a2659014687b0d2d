package dataset

import (
	"errors"
	"math"
	"slices"
	"strings"
	"testing"
)

func TestSine(t *testing.T) {
	train, test := Sine(5)
	if train.N != 5 || train.Dim != 1 || train.Outputs != 1 || train.Labels != nil || test.N != 4 || test.Outputs != 1 {
		t.Fatalf("Sine(5): train %+v, test %+v", train, test)
	}
	xs := []float64{-math.Pi, -math.Pi / 2, 0, math.Pi / 2, math.Pi}
	for i, x := range xs {
		if train.X[i] != float32(x) || train.Targets[i] != float32(math.Sin(x)) {
			t.Errorf("train %d: (%v, %v), want (%v, %v)", i, train.X[i], train.Targets[i], float32(x), float32(math.Sin(x)))
		}
	}
	for i := range test.N { // the midpoints
		x := (xs[i] + xs[i+1]) / 2
		if math.Abs(float64(test.X[i])-x) > 1e-6 || math.Abs(float64(test.Targets[i])-math.Sin(x)) > 1e-6 {
			t.Errorf("test %d: (%v, %v), want (%v, %v)", i, test.X[i], test.Targets[i], x, math.Sin(x))
		}
	}
	again, _ := Sine(5)
	if !slices.Equal(again.X, train.X) || !slices.Equal(again.Targets, train.Targets) {
		t.Error("Sine is not deterministic")
	}
}

func TestLoadSine(t *testing.T) {
	train, test, err := Load("sine:40")
	if err != nil || train.N != 40 || test.N != 39 {
		t.Fatalf("Load(sine:40) = %v, %v, %v", train, test, err)
	}
	for _, spec := range []string{"sine:", "sine:1", "sine:x", "sine:-3", "sine:99999999"} {
		_, _, err := Load(spec)
		if !errors.Is(err, ErrBadSpec) || !strings.Contains(err.Error(), spec) || !strings.Contains(err.Error(), "sine:N") {
			t.Errorf("Load(%q) = %v, want ErrBadSpec naming the value and sine:N", spec, err)
		}
	}
}

// A regression set gathers targets, and zero labels (it has none).
func TestGatherTargets(t *testing.T) {
	s := &Set{X: []float32{1, 2, 3}, Targets: []float32{10, 11, 20, 21, 30, 31}, N: 3, Dim: 1, Outputs: 2}
	idx := []int{2, 0}
	x, labels, tg := make([]float32, 2), []int32{7, 7}, make([]float32, 4)
	s.Gather(idx, x, labels)
	s.GatherTargets(idx, tg)
	if !slices.Equal(x, []float32{3, 1}) || !slices.Equal(labels, []int32{0, 0}) || !slices.Equal(tg, []float32{30, 31, 10, 11}) {
		t.Fatalf("x %v labels %v targets %v", x, labels, tg)
	}
	if allocs := testing.AllocsPerRun(100, func() { s.GatherTargets(idx, tg) }); allocs != 0 {
		t.Fatalf("GatherTargets allocates %v times", allocs)
	}
	sub := s.Subset(2)
	if sub.Labels != nil || !slices.Equal(sub.Targets, []float32{10, 11, 20, 21}) || sub.Outputs != 2 {
		t.Fatalf("Subset(2) = %+v", sub)
	}
	defer func() {
		if recover() == nil {
			t.Fatal("GatherTargets into a short buffer did not panic")
		}
	}()
	s.GatherTargets(idx, make([]float32, 3))
}
