//go:build !amd64 || race || purego

package allreduce

// addFloats adds s into d; len(s) ≥ len(d). (Under the race detector the
// amd64 assembly is not used, so that the detector sees the writes.)
func addFloats(d, s []float32) {
	s = s[:len(d)]
	i := 0
	for ; i+8 <= len(d); i += 8 {
		dd := d[i : i+8 : i+8]
		x := s[i : i+8 : i+8]
		dd[0] += x[0]
		dd[1] += x[1]
		dd[2] += x[2]
		dd[3] += x[3]
		dd[4] += x[4]
		dd[5] += x[5]
		dd[6] += x[6]
		dd[7] += x[7]
	}
	for ; i < len(d); i++ {
		d[i] += s[i]
	}
}
