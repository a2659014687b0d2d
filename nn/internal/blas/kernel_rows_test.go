package blas

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// rowsOf returns op(A) restricted to the given rows, in that order, as a new
// matrix with a compact stride (so a row's position and alignment in memory
// change too), and C's rows likewise.
func rowsOf(transA bool, rows []int, k int, a []float32, lda int, c []float32, ldc, n int) (sa []float32, slda int, sc []float32) {
	m := len(rows)
	if transA {
		// op(A) is Aᵀ: its row i is column i of the k×m matrix A.
		sa, slda = make([]float32, k*m), m
		for p := range k {
			for j, i := range rows {
				sa[p*slda+j] = a[p*lda+i]
			}
		}
	} else {
		sa, slda = make([]float32, m*k), k
		for j, i := range rows {
			copy(sa[j*slda:j*slda+k], a[i*lda:i*lda+k])
		}
	}
	sc = make([]float32, m*n)
	for j, i := range rows {
		copy(sc[j*n:j*n+n], c[i*ldc:i*ldc+n])
	}
	return sa, slda, sc
}

// TestGoKernelsRowIndependent: a row of C has the same bits whatever m is
// and whichever other rows of op(A) are multiplied with it — alone, in a
// range starting anywhere, in micro-shards of 16 rows, or gathered out of
// order into a new matrix — for every kernel this CPU runs, each transpose,
// alpha = 1 with beta = 0 and general alpha and beta, one thread or several.
// Exact training relies on this to multiply many micro-shards in one product
// and still get each micro-shard's bits.
func TestGoKernelsRowIndependent(t *testing.T) {
	const m = 53
	var subsets [][]int
	for i := range m {
		subsets = append(subsets, []int{i}) // one row at a time
	}
	span := func(lo, hi int) []int {
		var s []int
		for i := lo; i < hi; i++ {
			s = append(s, i)
		}
		return s
	}
	for lo := 0; lo < m; lo += 16 {
		subsets = append(subsets, span(lo, min(lo+16, m))) // micro-shards of 16
	}
	subsets = append(subsets, span(5, 29), span(1, 9), span(44, 53), []int{52, 0, 17, 8, 9, 33, 3})
	shapes := []struct{ n, k int }{{70, 300}, {33, 17}, {100, 784}, {7, 9}}
	scalars := []struct{ alpha, beta float32 }{{1, 0}, {-0.75, 0.5}, {1.5, 1}}
	for _, kern := range goKernels() {
		threads := []int{1, 3}
		if kern == kernelGeneric {
			threads = []int{1} // gonum's parallel Sgemm sums in another order
		}
		for si, s := range shapes {
			for tr := range 4 {
				transA, transB := tr&1 == 1, tr&2 == 2
				for _, sc := range scalars {
					for _, th := range threads {
						name := fmt.Sprintf("%s n=%d k=%d transA=%v transB=%v alpha=%v beta=%v threads=%d",
							kern, s.n, s.k, transA, transB, sc.alpha, sc.beta, th)
						rng := rand.New(rand.NewPCG(11, uint64(si*8+tr)))
						a, lda, b, ldb, c0, ldc := operands(rng, transA, transB, m, s.n, s.k, sc.beta)
						full := append([]float32(nil), c0...)
						kern.sgemm(th, transA, transB, m, s.n, s.k, sc.alpha, a, lda, b, ldb, sc.beta, full, ldc)
						for _, rows := range subsets {
							sa, slda, part := rowsOf(transA, rows, s.k, a, lda, c0, ldc, s.n)
							kern.sgemm(th, transA, transB, len(rows), s.n, s.k, sc.alpha, sa, slda, b, ldb, sc.beta, part, s.n)
							for j, i := range rows {
								for col := range s.n {
									got, want := part[j*s.n+col], full[i*ldc+col]
									if math.Float32bits(got) != math.Float32bits(want) {
										t.Fatalf("%s: row %d computed with rows %v: c[%d][%d] = %v, with all %d rows %v",
											name, i, rows, i, col, got, m, want)
									}
								}
							}
						}
					}
				}
			}
		}
	}
}
