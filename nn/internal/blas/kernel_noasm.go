//go:build !amd64 || noasm || (cgo && !purego)

package blas

// haveAVX2 is false where the AVX2 kernel is not assembled: other
// architectures, amd64 built with -tags noasm, and the OpenBLAS build (a
// package using cgo cannot hold Go assembly).
const haveAVX2 = false

func panelAVX2(k, tiles int, a, b, c *float32, ldc int, alpha, beta float32, load bool) {
	panic("blas: the AVX2 kernel is not in this build")
}

func packTransAVX2(dst, src *float32, ld, k int) {
	panic("blas: the AVX2 kernel is not in this build")
}

func packCopyAVX2(dst, src *float32, ld, k int) {
	panic("blas: the AVX2 kernel is not in this build")
}
