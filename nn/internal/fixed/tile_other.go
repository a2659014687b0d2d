//go:build !amd64 || noasm

package fixed

func tile4x32(d *float32, a *float32, rows *int32, nmicro int, shift float32, acc *int64, ldacc int, out *float32, unscale float64) {
	panic("fixed: no kernel on this architecture")
}

func haveAVX512() bool { return false }

func maxAbsBits(v *float32, n int) uint32 { panic("fixed: no kernel on this architecture") }
