// Package fixed computes the weight gradient of a dense layer over several
// micro-shards straight into fixed point, for exact training: for each
// micro-shard the float32 gradient Δᵀ·A of its rows, then each value scaled
// by a power of two and rounded to an integer, the integers summed over the
// micro-shards — in one pass, the float32 tile never leaving the registers.
//
// The float32 value of a micro-shard is one chain of fused multiply-adds
// from zero over its rows in order, what the pure-Go GEMM kernels compute
// for the same product (the tests compare the two, bit for bit), and the
// rounding is to nearest, ties to even; so the integers are those of a GEMM
// per micro-shard followed by a conversion, at a fraction of the memory
// traffic. It runs where the CPU has AVX-512 (Kernel says so); elsewhere
// callers take that longer way.
package fixed

import (
	"fmt"
	"math"
	"os"
)

// kernel is the kernel's name, "" where this CPU has none or KernelEnv
// turned it off.
var kernel = chooseKernel(os.Getenv(KernelEnv))

func chooseKernel(env string) string {
	if env == "off" || !haveAVX512() {
		return ""
	}
	return "avx512"
}

// KernelEnvError reports a KernelEnv value this process cannot honour — not
// "off" or "avx512", or "avx512" on a CPU without AVX-512F and DQ — as one
// line naming the variable, the value and the valid values; nil when it is
// unset or honoured.
func KernelEnvError() error {
	switch v := os.Getenv(KernelEnv); {
	case v == "" || v == "off":
		return nil
	case v == "avx512" && haveAVX512():
		return nil
	case v == "avx512":
		return fmt.Errorf("%s=avx512: this CPU lacks AVX-512F or AVX-512DQ; unset it (exact training then computes a float32 gradient per micro-shard) or set it to off", KernelEnv)
	default:
		return fmt.Errorf("%s=%q is not a fixed-point kernel; use avx512 or off, or unset it", KernelEnv, v)
	}
}

// KernelEnv, set to "off", makes Kernel report none, so that exact training
// takes the GEMM-per-micro-shard way (to measure or test it).
const KernelEnv = "RINGTRAIN_FIXED_KERNEL"

// Kernel names the kernel WeightGrad runs on this CPU ("avx512"), or "" when
// there is none and WeightGrad must not be called.
func Kernel() string { return kernel }

// Tile sizes of the kernel: rows of the gradient (the layer's outputs) by
// columns (its inputs).
const (
	tileRows = 4
	tileCols = 32
)

// Scratch holds WeightGrad's packed copies of its operands; reuse one to
// allocate nothing in steady state.
type Scratch struct {
	d, a []float32
	acc  [tileRows * tileCols]int64
}

// WeightGrad sets acc[o·inW + i], for o < outW and i < inW, to
//
//	Σ_m round(2^shift · Σ_{r ∈ m} d[r·outW + o] · a[r·inW + i])
//
// where micro-shard m is the next rows[m] rows of d ([Σrows, outW], the
// layer's deltas) and a ([Σrows, inW], its inputs), the inner sum float32
// (fused multiply-adds from zero, in order of r), the product by 2^shift
// exact and the rounding to nearest, ties to even. Every scaled value must
// be below 2^51 in magnitude and their sum below 2^63 (the caller's
// exponent bound ensures both).
//
// The operands are packed first, so that the kernel reads both
// sequentially: d as row tiles of 4 columns ([tile][row][4]), a one strip
// of 32 columns at a time ([row][32]), the strip staying in the L1 cache
// while every row tile streams past it. Edges are zero-padded; their
// integers are zero and are not stored.
func WeightGrad(acc []int64, d []float32, outW int, a []float32, inW int, rows []int32, shift int, s *Scratch) {
	if len(acc) < outW*inW {
		panic(fmt.Sprintf("fixed: WeightGrad: len(acc) %d < %d×%d", len(acc), outW, inW))
	}
	weightGrad(acc, nil, d, outW, a, inW, rows, shift, s)
}

// WeightGradFloat is WeightGrad followed by the conversion of the sums back
// to float32: out[o·inW + i] = float32(sum · 2^−shift), rounded once — for
// a sum that needs no other rank's (one process), with no integer ever
// stored.
func WeightGradFloat(out []float32, d []float32, outW int, a []float32, inW int, rows []int32, shift int, s *Scratch) {
	if len(out) < outW*inW {
		panic(fmt.Sprintf("fixed: WeightGradFloat: len(out) %d < %d×%d", len(out), outW, inW))
	}
	weightGrad(nil, out, d, outW, a, inW, rows, shift, s)
}

func weightGrad(acc []int64, out []float32, d []float32, outW int, a []float32, inW int, rows []int32, shift int, s *Scratch) {
	if kernel == "" {
		panic("fixed: WeightGrad without a kernel; check Kernel() first")
	}
	total := 0
	for _, r := range rows {
		total += int(r)
	}
	if len(d) < total*outW || len(a) < total*inW {
		panic(fmt.Sprintf("fixed: WeightGrad: %d rows of %d×%d need len(d) ≥ %d (have %d) and len(a) ≥ %d (have %d)",
			total, outW, inW, total*outW, len(d), total*inW, len(a)))
	}
	if total == 0 || len(rows) == 0 {
		if out != nil {
			clear(out[:outW*inW])
		} else {
			clear(acc[:outW*inW])
		}
		return
	}
	sh, unscale := float32(shift), math.Ldexp(1, -shift)
	tiles := (outW + tileRows - 1) / tileRows
	s.d = grow(s.d, tiles*total*tileRows)
	packTiles(s.d, d, total, outW)
	s.a = grow(s.a, total*tileCols)
	for i0 := 0; i0 < inW; i0 += tileCols {
		cols := min(tileCols, inW-i0)
		packStrip(s.a, a, total, inW, i0, cols)
		for t := range tiles {
			o0 := t * tileRows
			dp := &s.d[t*total*tileRows]
			if o0+tileRows <= outW && cols == tileCols {
				if out != nil {
					tile4x32(dp, &s.a[0], &rows[0], len(rows), sh, nil, inW, &out[o0*inW+i0], unscale)
				} else {
					tile4x32(dp, &s.a[0], &rows[0], len(rows), sh, &acc[o0*inW+i0], inW, nil, 0)
				}
				continue
			}
			tile4x32(dp, &s.a[0], &rows[0], len(rows), sh, &s.acc[0], tileCols, nil, 0)
			for j := range min(tileRows, outW-o0) {
				src := s.acc[j*tileCols:][:cols]
				if out != nil {
					dst := out[(o0+j)*inW+i0:][:cols]
					for c, v := range src {
						dst[c] = float32(float64(v) * unscale)
					}
				} else {
					copy(acc[(o0+j)*inW+i0:][:cols], src)
				}
			}
		}
	}
}

// packTiles copies d ([rows, outW]) into dst as tiles of 4 columns, each
// [rows][4], the last zero-padded.
func packTiles(dst, d []float32, rows, outW int) {
	for o0 := 0; o0 < outW; o0 += tileRows {
		t := dst[o0*rows : (o0+tileRows)*rows]
		n := min(tileRows, outW-o0)
		if n == tileRows {
			for r := range rows {
				src := d[r*outW+o0 : r*outW+o0+tileRows : r*outW+o0+tileRows]
				dt := t[r*tileRows : r*tileRows+tileRows : r*tileRows+tileRows]
				dt[0], dt[1], dt[2], dt[3] = src[0], src[1], src[2], src[3]
			}
			continue
		}
		for r := range rows {
			dt := t[r*tileRows : (r+1)*tileRows]
			clear(dt[copy(dt, d[r*outW+o0:r*outW+o0+n]):])
		}
	}
}

// packStrip copies columns [i0, i0+cols) of a ([rows, inW]) into dst as
// [rows][32], zero-padded past cols.
func packStrip(dst, a []float32, rows, inW, i0, cols int) {
	for r := range rows {
		row := dst[r*tileCols : (r+1)*tileCols]
		n := copy(row[:cols], a[r*inW+i0:])
		if n < tileCols {
			clear(row[n:])
		}
	}
}

// MaxAbs is the largest |v[i]| (NaN if any v[i] is NaN), the bound exact
// training takes of activations and deltas. It compares the bits of |x| as
// integers — their order is the order of the magnitudes, and every NaN lies
// above infinity — 64 values an iteration where the CPU has AVX-512.
func MaxAbs(v []float32) float64 {
	const abs = 0x7fffffff
	var m uint32
	i := 0
	if kernel != "" && len(v) >= 64 {
		i = len(v) &^ 63
		m = maxAbsBits(&v[0], i)
	}
	for _, x := range v[i:] {
		m = max(m, math.Float32bits(x)&abs)
	}
	if m > 0x7f800000 {
		return math.NaN()
	}
	return float64(math.Float32frombits(m))
}

func grow(s []float32, n int) []float32 {
	if cap(s) < n {
		return make([]float32, n)
	}
	return s[:n]
}
