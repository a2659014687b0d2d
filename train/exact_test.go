package train

import (
	"math"
	"math/bits"
	"math/rand/v2"
	"os"
	"runtime"
	"testing"
)

// reduceExact is the exact reduction of exact.go done by hand for one
// bucket: micro-shards grouped by rank as placement says, each rank's
// exponent and integer sum, the exponents' max and the integers' sum in the
// order given, and the conversion back.
func reduceExact(shards [][]float32, placement [][]int, order []int) []float32 {
	k := len(shards)
	e := &exactState{k: k, c: bits.Len(uint(k - 1))}
	sp := span{0, len(shards[0])}
	exp := expZero
	for _, group := range placement {
		for _, j := range group {
			exp = max(exp, maxExpOf(shards[j]))
		}
	}
	total := make([]int64, sp.len)
	acc := make([]int64, sp.len)
	for _, r := range order {
		var local [][]float32
		for _, j := range placement[r] {
			local = append(local, shards[j])
		}
		toFixed(acc, local, sp, e.shift(exp))
		for i, v := range acc {
			total[i] += v
		}
	}
	out := make([]float32, sp.len)
	fromFixed(out, total, e.shift(exp))
	return out
}

// The property of exact training: the reduced bits do not depend on how the
// micro-shards are placed on ranks, on the number of ranks (1 to 8), or on
// the ring order — for values spanning 2^±60 that cancel.
func TestExactReductionIsPlacementIndependent(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	const k, n = 8, 257
	shards := make([][]float32, k)
	for j := range shards {
		shards[j] = make([]float32, n)
		for i := range shards[j] {
			v := float32(math.Ldexp(rng.Float64()+0.5, rng.IntN(121)-60))
			if rng.IntN(2) == 0 {
				v = -v
			}
			shards[j][i] = v
		}
	}
	// Cancellation: element 0 sums to exactly its last term; element 1 to zero.
	for j := range shards {
		shards[j][0] = float32(math.Ldexp(1, 60))
		shards[j][1] = float32(math.Ldexp(float64(j+1), 20))
	}
	for j := k / 2; j < k; j++ {
		shards[j][0] = -shards[j][0]
		shards[j][1] = -shards[j-k/2][1]
	}
	shards[k-1][0] += float32(math.Ldexp(1, 30))
	contiguous := func(world int) [][]int {
		p := make([][]int, world)
		for r := range world {
			lo, hi := rangeOf(k, r, world)
			for j := lo; j < hi; j++ {
				p[r] = append(p[r], j)
			}
		}
		return p
	}
	ident := func(n int) []int {
		o := make([]int, n)
		for i := range o {
			o[i] = i
		}
		return o
	}
	want := reduceExact(shards, contiguous(1), ident(1))
	if want[1] != 0 {
		t.Fatalf("cancelling element: %v, want 0", want[1])
	}
	for world := 1; world <= 8; world++ {
		for trial := range 20 {
			p := contiguous(world)
			if trial > 0 { // any placement: shuffle micro-shards over ranks
				perm := rng.Perm(k)
				p = make([][]int, world)
				for i, j := range perm {
					p[i%world] = append(p[i%world], j)
				}
			}
			order := rng.Perm(world)
			got := reduceExact(shards, p, order)
			for i := range want {
				if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
					t.Fatalf("world %d trial %d: element %d = %v (%08x), one rank %v (%08x)",
						world, trial, i, got[i], math.Float32bits(got[i]), want[i], math.Float32bits(want[i]))
				}
			}
		}
	}
	// And it is the sum: within the bucket's quantum (2^(E+c−51) per
	// micro-shard, E the largest exponent) and float32 rounding of a float64
	// sum of the same values.
	quantum := math.Ldexp(k, maxExpOf(shards[0])+bits.Len(k-1)-fixedBits)
	for i := 2; i < n; i++ {
		var s float64
		for j := range shards {
			s += float64(shards[j][i])
		}
		if d := math.Abs(float64(want[i]) - s); d > quantum+math.Abs(s)*0x1p-23 {
			t.Fatalf("element %d: exact %v, float64 sum %v", i, want[i], s)
		}
	}
}

func rangeOf(k, r, world int) (int, int) {
	e := &exactState{k: k}
	return e.microRange(r, world)
}

// maxExpOf is the exponent of the exact bound max|v| of g.
func maxExpOf(g []float32) int {
	var m float64
	for _, v := range g {
		m = max(m, math.Abs(float64(v)))
	}
	return boundExp(m, math.MaxFloat32)
}

func TestBoundExp(t *testing.T) {
	for _, tc := range []struct {
		v    float64
		want int
	}{
		{0, expZero}, {1, 1}, {0.75, 0}, {3, 2}, {math.Inf(1), expNonFinite}, {math.NaN(), expNonFinite},
		{math.MaxFloat32 * 2, expNonFinite}, {math.SmallestNonzeroFloat32, -148},
	} {
		got := boundExp(tc.v, math.MaxFloat32)
		if got != tc.want {
			t.Errorf("boundExp(%v) = %d, want %d", tc.v, got, tc.want)
		}
		if got != expZero && got != expNonFinite && !(tc.v < math.Ldexp(1, got) && tc.v >= math.Ldexp(1, got-1)) {
			t.Errorf("%v is not in [2^%d, 2^%d)", tc.v, got-1, got)
		}
	}
}

// The AVX2 conversions give the Go loops' bits, for every tail length and
// values of every magnitude and sign.
func TestFixedKernelsMatchGo(t *testing.T) {
	if fixedKernel != kernelAVX2 {
		// Not a missing tool but a missing kernel: CI's machines are amd64
		// with AVX2, where a build that lost the kernel must not pass.
		if os.Getenv("CI") != "" && runtime.GOARCH == "amd64" {
			t.Fatal("no AVX2 kernel on amd64 in CI: this build or CPU lost it")
		}
		t.Skip("no AVX2 kernel here (the Go loops are the only conversions)")
	}
	defer func() { fixedKernel = kernelAVX2 }()
	rng := rand.New(rand.NewPCG(3, 4))
	for _, n := range []int{0, 1, 15, 16, 17, 31, 32, 33, 1000, 4099} {
		g := make([]float32, n)
		for i := range g {
			g[i] = float32(math.Ldexp(rng.NormFloat64(), rng.IntN(80)-70))
		}
		if n > 3 {
			g[0], g[1], g[2] = 0, -0.0, math.SmallestNonzeroFloat32
		}
		for _, shift := range []int{0, 20, 38} { // |g · 2^shift| < 2^51
			for _, add := range []bool{false, true} {
				want, got := make([]int64, n), make([]int64, n)
				for i := range want {
					want[i] = rng.Int64() >> 14 // sums stay below 2^51, as in a step
					got[i] = want[i]
				}
				scale := math.Ldexp(1, shift)
				fixedKernel = kernelGo
				fixedInto(want, g, scale, add)
				fixedKernel = kernelAVX2
				fixedInto(got, g, scale, add)
				for i := range want {
					if got[i] != want[i] {
						t.Fatalf("n %d shift %d add %v: acc[%d] = %d, Go %d (g %v)", n, shift, add, i, got[i], want[i], g[i])
					}
				}
				wf, gf := make([]float32, n), make([]float32, n)
				fixedKernel = kernelGo
				fromFixed(wf, want, shift)
				fixedKernel = kernelAVX2
				fromFixed(gf, want, shift)
				for i := range wf {
					if math.Float32bits(wf[i]) != math.Float32bits(gf[i]) {
						t.Fatalf("n %d shift %d: fromFixed[%d] = %v, Go %v", n, shift, i, gf[i], wf[i])
					}
				}
			}
		}
	}
}
