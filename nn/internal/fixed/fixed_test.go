package fixed

import (
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"testing"

	"github.com/ringtrain/ringtrain/nn/internal/blas"

	"github.com/ringtrain/ringtrain/internal/testenv"
)

// fma32 is float32's fused multiply-add, correctly rounded: the product is
// exact in float64, the sum is rounded to odd in float64 (53 ≥ 24+2 bits),
// so the final rounding to float32 is the only one that counts.
func fma32(a, b, c float32) float32 {
	p := float64(a) * float64(b)
	s := p + float64(c)
	bb := s - p
	if err := (p - (s - bb)) + (float64(c) - bb); err != 0 {
		if bits := math.Float64bits(s); bits&1 == 0 {
			if (err > 0) == (s > 0) {
				bits++
			} else {
				bits--
			}
			s = math.Float64frombits(bits)
		}
	}
	return float32(s)
}

// oracle is WeightGrad computed the long way: each micro-shard's float32
// chain with fma32, then the scaled value rounded with math.RoundToEven.
func oracle(d []float32, outW int, a []float32, inW int, rows []int32, shift int) []int64 {
	acc := make([]int64, outW*inW)
	r0 := 0
	for _, n := range rows {
		for o := range outW {
			for i := range inW {
				var s float32
				for r := r0; r < r0+int(n); r++ {
					s = fma32(d[r*outW+o], a[r*inW+i], s)
				}
				acc[o*inW+i] += int64(math.RoundToEven(math.Ldexp(float64(s), shift)))
			}
		}
		r0 += int(n)
	}
	return acc
}

func randVals(rng *rand.Rand, n int, spread int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(math.Ldexp(rng.NormFloat64(), rng.IntN(2*spread+1)-spread))
		if rng.IntN(7) == 0 {
			v[i] = 0
		}
	}
	return v
}

// shiftFor is the scale exact training would use: values below 2^e, the
// sum of len(rows) of them below 2^51.
func shiftFor(d []float32, a []float32, rows []int32) int {
	var md, ma float64
	for _, x := range d {
		md = max(md, math.Abs(float64(x)))
	}
	for _, x := range a {
		ma = max(ma, math.Abs(float64(x)))
	}
	var mr int32
	for _, r := range rows {
		mr = max(mr, r)
	}
	_, e := math.Frexp(2 * float64(mr) * md * ma)
	c := 0
	for 1<<c < len(rows) {
		c++
	}
	return 51 - c - e
}

func TestWeightGradMatchesOracle(t *testing.T) {
	testenv.Need(t, Kernel() != "", "the fixed-point kernel (AVX-512F and DQ)")
	rng := rand.New(rand.NewPCG(1, 2))
	var s Scratch
	for _, c := range []struct {
		outW, inW int
		rows      []int32
		spread    int
	}{
		{4, 32, []int32{1}, 0},
		{4, 32, []int32{16, 16, 16}, 3},
		{10, 784, []int32{16, 16, 7}, 2},
		{5, 33, []int32{3, 0, 5}, 20},
		{1, 1, []int32{2}, 0},
		{7, 70, []int32{8, 8, 8, 8, 8}, 30},
		{13, 31, []int32{32, 12}, 1},
	} {
		total := 0
		for _, r := range c.rows {
			total += int(r)
		}
		d := randVals(rng, total*c.outW, c.spread)
		a := randVals(rng, total*c.inW, c.spread)
		shift := shiftFor(d, a, c.rows)
		want := oracle(d, c.outW, a, c.inW, c.rows, shift)
		got := make([]int64, c.outW*c.inW)
		for i := range got {
			got[i] = 12345 // overwritten
		}
		WeightGrad(got, d, c.outW, a, c.inW, c.rows, shift, &s)
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("%d×%d rows %v: acc[%d] = %d, want %d", c.outW, c.inW, c.rows, i, got[i], want[i])
			}
		}
	}
}

func TestFMA32(t *testing.T) {
	// (1+2^-12)² = 1 + 2^-11 + 2^-24: 2^-24 is half of float32's unit at 1,
	// a tie, rounded to even; a tiny addend breaks the tie upward, which a
	// float64 sum rounded twice would miss.
	a := float32(1 + 1.0/(1<<12))
	if got, want := fma32(a, a, 0), float32(1+1.0/(1<<11)); got != want {
		t.Fatalf("fma32(a, a, 0) = %v, want %v (the tie to even)", got, want)
	}
	if got, want := fma32(a, a, float32(math.Ldexp(1, -60))), float32(1+1.0/(1<<11)+1.0/(1<<23)); got != want {
		t.Fatalf("fma32(a, a, 2^-60) = %v, want %v (above the tie)", got, want)
	}
}

// TestKernelPresent fails where the CPU has AVX-512 but the kernel is off
// (a build or detection fault), so CI on such machines runs it.
func TestKernelPresent(t *testing.T) {
	if haveAVX512() && Kernel() == "" && os.Getenv(KernelEnv) != "off" {
		t.Fatal("this CPU has AVX-512F and DQ but the fixed-point kernel is not in use")
	}
}

// BenchmarkWeightGrad784 is the reference MLP's first layer over a batch of
// 256 in 16 micro-shards: compare with BenchmarkSgemmGrad784, the float32
// weight gradient of the same batch in one GEMM.
func BenchmarkWeightGrad784(b *testing.B) {
	if Kernel() == "" {
		b.Skip("no kernel")
	}
	const outW, inW, batch, micro = 512, 784, 256, 16
	rng := rand.New(rand.NewPCG(1, 1))
	d, a := randVals(rng, batch*outW, 2), randVals(rng, batch*inW, 2)
	rows := make([]int32, batch/micro)
	for i := range rows {
		rows[i] = micro
	}
	acc := make([]int64, outW*inW)
	var s Scratch
	for b.Loop() {
		WeightGrad(acc, d, outW, a, inW, rows, 20, &s)
	}
}

func BenchmarkSgemmGrad784(b *testing.B) {
	const outW, inW, batch = 512, 784, 256
	rng := rand.New(rand.NewPCG(1, 1))
	d, a := randVals(rng, batch*outW, 2), randVals(rng, batch*inW, 2)
	g := make([]float32, outW*inW)
	for b.Loop() {
		blas.Sgemm(true, false, outW, inW, batch, 1, d, outW, a, inW, 0, g, inW)
	}
}

func TestMaxAbs(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 9))
	for _, n := range []int{0, 1, 63, 64, 65, 200, 1000} {
		v := randVals(rng, n, 30)
		var want float64
		for _, x := range v {
			want = max(want, math.Abs(float64(x)))
		}
		if got := MaxAbs(v); got != want {
			t.Fatalf("n=%d: MaxAbs = %v, want %v", n, got, want)
		}
		if n == 0 {
			continue
		}
		for _, special := range []float32{float32(math.Inf(-1)), float32(math.NaN())} {
			w := slices.Clone(v)
			w[rng.IntN(n)] = special
			got := MaxAbs(w)
			if math.IsNaN(float64(special)) != math.IsNaN(got) || !math.IsNaN(got) && !math.IsInf(got, 1) {
				t.Fatalf("n=%d with %v: MaxAbs = %v", n, special, got)
			}
		}
	}
}

// TestWeightGradFloat: the float32 images are those of WeightGrad's
// integers, converted once.
func TestWeightGradFloat(t *testing.T) {
	testenv.Need(t, Kernel() != "", "the fixed-point kernel (AVX-512F and DQ)")
	rng := rand.New(rand.NewPCG(7, 8))
	var s Scratch
	for _, c := range []struct {
		outW, inW int
		rows      []int32
	}{{10, 784, []int32{16, 16, 7}}, {8, 64, []int32{4}}, {5, 33, []int32{3, 0, 5}}} {
		total := 0
		for _, r := range c.rows {
			total += int(r)
		}
		d, a := randVals(rng, total*c.outW, 3), randVals(rng, total*c.inW, 3)
		shift := shiftFor(d, a, c.rows)
		acc := make([]int64, c.outW*c.inW)
		WeightGrad(acc, d, c.outW, a, c.inW, c.rows, shift, &s)
		out := make([]float32, c.outW*c.inW)
		WeightGradFloat(out, d, c.outW, a, c.inW, c.rows, shift, &s)
		for i, v := range acc {
			want := float32(math.Ldexp(float64(v), -shift))
			if math.Float32bits(out[i]) != math.Float32bits(want) {
				t.Fatalf("%d×%d [%d]: %v, want %v (from %d)", c.outW, c.inW, i, out[i], want, v)
			}
		}
	}
}
