//go:build amd64 && !race && !purego

package allreduce

// addF32 adds src[i] to dst[i] for i < n (assembly; see add_amd64.s).
//
//go:noescape
func addF32(dst, src *float32, n int)

// addFloats adds s into d; len(s) ≥ len(d).
func addFloats(d, s []float32) {
	if len(d) > 0 {
		_ = s[len(d)-1]
		addF32(&d[0], &s[0], len(d))
	}
}
