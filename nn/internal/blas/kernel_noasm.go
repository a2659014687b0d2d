//go:build !amd64 || noasm || (cgo && !gogemm)

package blas

// haveAVX2 and haveAVX512 are false where the assembly kernels are not
// assembled: other architectures, amd64 built with -tags noasm, and the
// OpenBLAS build (a package using cgo cannot hold Go assembly).
const (
	haveAVX2   = false
	haveAVX512 = false
)

const noAsm = "blas: the assembly kernels are not in this build"

func panelAVX2(k, tiles int, a, b, c *float32, ldc int, alpha, beta float32, load bool) {
	panic(noAsm)
}

func panelAVX512(k, tiles int, a, b, c *float32, ldc int, alpha, beta float32, load bool) {
	panic(noAsm)
}

func packTrans16(dst, src *float32, ld, k int) { panic(noAsm) }

func packCopy16(dst, src *float32, ld, k int) { panic(noAsm) }

func packTrans32(dst, src *float32, ld, k int) { panic(noAsm) }

func packCopy32(dst, src *float32, ld, k int) { panic(noAsm) }

func packRows8(dst, src *float32, ld, k int) { panic(noAsm) }
