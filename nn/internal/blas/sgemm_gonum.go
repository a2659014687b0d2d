package blas

import (
	gblas "gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/gonum"
)

// Tile sizes for gonumSgemm's serial path. gonum's Sgemm stays serial when C
// spans fewer than 4 of its 64×64 blocks, so a 64×192 tile never starts
// goroutines.
const (
	tileRows = 64
	tileCols = 192
)

// gonumSgemm is the pure-Go implementation, compiled into every build so that
// tests can hold it against a naive product and against OpenBLAS. With
// threads > 1 it is gonum's parallel Sgemm, which starts up to GOMAXPROCS
// goroutines and waits for them; with 1 it splits C into tiles small enough
// for gonum to compute each one serially on the calling goroutine.
func gonumSgemm(threads int, transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	ta, tb := gblas.NoTrans, gblas.NoTrans
	if transA {
		ta = gblas.Trans
	}
	if transB {
		tb = gblas.Trans
	}
	var impl gonum.Implementation
	if threads > 1 {
		impl.Sgemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
		return
	}
	for i := 0; i < m; i += tileRows {
		mi := min(tileRows, m-i)
		// Rows i..i+mi of op(A): row offset i*lda, or column offset i when transposed.
		ai := a[i:]
		if !transA {
			ai = a[i*lda:]
		}
		for j := 0; j < n; j += tileCols {
			nj := min(tileCols, n-j)
			// Columns j..j+nj of op(B): column offset j, or row offset j*ldb when transposed.
			bj := b[j:]
			if transB {
				bj = b[j*ldb:]
			}
			impl.Sgemm(ta, tb, mi, nj, k, alpha, ai, lda, bj, ldb, beta, c[i*ldc+j:], ldc)
		}
	}
}
