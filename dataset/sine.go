package dataset

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// sinePrefix introduces a generated sine --data value, "sine:N".
const sinePrefix = "sine:"

// maxSine bounds N of "sine:N" (float32 x values stay distinct far beyond).
const maxSine = 1 << 24

// Sine generates a regression set: the curve sin(x) on [-π, π], one input
// and one target per example. The training set is n evenly spaced points
// x_i = -π + 2π·i/(n-1), i = 0..n-1 (both ends included); the test set is
// the n-1 midpoints between them, so it measures the fit between the points
// trained on. Each x is computed in float64 and stored as float32 with the
// target float32(sin(x)), so the set is the same on every run. It panics
// unless 2 <= n <= 2^24.
func Sine(n int) (train, test *Set) {
	if n < 2 || n > maxSine {
		panic(fmt.Sprintf("dataset: Sine(%d): want 2 <= n <= %d", n, maxSine))
	}
	at := func(k float64) float64 { return -math.Pi + 2*math.Pi*k/float64(n-1) }
	return sineSet(n, func(i int) float64 { return at(float64(i)) }),
		sineSet(n-1, func(i int) float64 { return at(float64(i) + 0.5) })
}

func sineSet(n int, x func(int) float64) *Set {
	s := &Set{X: make([]float32, n), Targets: make([]float32, n), N: n, Dim: 1, Outputs: 1}
	for i := range n {
		v := x(i)
		s.X[i] = float32(v)
		s.Targets[i] = float32(math.Sin(v))
	}
	return s
}

// parseSine reads the N of "sine:N".
func parseSine(spec string) (int, error) {
	n, err := strconv.Atoi(strings.TrimPrefix(spec, sinePrefix))
	if err != nil || n < 2 || n > maxSine {
		return 0, fmt.Errorf("%w: --data=%q: want sine:N with N training points, 2 <= N <= %d, e.g. sine:40", ErrBadSpec, spec, maxSine)
	}
	return n, nil
}
