//go:build !amd64 || noasm

package fixed

func tile4x32(d *float32, ldd int, a *float32, lda int, rows *int32, nmicro int, shift float32, acc *int64, ldacc int) {
	panic("fixed: no kernel on this architecture")
}

func haveAVX512() bool { return false }
