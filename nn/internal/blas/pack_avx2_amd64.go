//go:build amd64 && !noasm && (!cgo || gogemm)

package blas

// packTrans16 packs 16 rows of a matrix, ld apart, as a 16-column sliver of
// k rows (k a multiple of 8); see pack_avx2_amd64.s. It needs AVX2.
//
//go:noescape
func packTrans16(dst, src *float32, ld, k int)

// packCopy16 packs 16 columns of k rows of a matrix, ld apart, as a
// 16-column sliver. It needs AVX2.
//
//go:noescape
func packCopy16(dst, src *float32, ld, k int)

// packTrans32 packs 32 rows of a matrix, ld apart, as a 32-column sliver of
// k rows (k a multiple of 8). It needs AVX2.
//
//go:noescape
func packTrans32(dst, src *float32, ld, k int)

// packCopy32 packs 32 columns of k rows of a matrix, ld apart, as a
// 32-column sliver. It needs AVX2.
//
//go:noescape
func packCopy32(dst, src *float32, ld, k int)

// packRows8 packs 8 rows of a matrix, ld apart, as an 8-row sliver of k
// columns (k a multiple of 8), column p at 8p. It needs AVX2.
//
//go:noescape
func packRows8(dst, src *float32, ld, k int)
