package allreduce

import (
	"encoding/binary"
	"unsafe"
)

// The int64 wire format of AllReduceInt64: little-endian two's complement,
// sent without a copy on little-endian hosts, as float32s are (floats.go).

// wireBytesInt64 returns v as wire bytes. On little-endian hosts the result
// aliases v; otherwise it is a new encoded copy.
func wireBytesInt64(v []int64) []byte {
	if len(v) == 0 {
		return nil
	}
	if nativeLittleEndian {
		return unsafe.Slice((*byte)(unsafe.Pointer(&v[0])), 8*len(v))
	}
	b := make([]byte, 8*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint64(b[8*i:], uint64(x))
	}
	return b
}

// addLE64 adds the little-endian int64s in src to dst, wrapping around on
// overflow; len(src) == 8*len(dst).
func addLE64(dst []int64, src []byte) {
	if aligned(src, 8) {
		addInt64s(dst, unsafe.Slice((*int64)(unsafe.Pointer(&src[0])), len(src)/8))
		return
	}
	src = src[:8*len(dst)]
	for i := range dst {
		dst[i] += int64(binary.LittleEndian.Uint64(src[8*i:]))
	}
}

// copyLE64 stores the little-endian int64s in src into dst; len(src) == 8*len(dst).
func copyLE64(dst []int64, src []byte) {
	if nativeLittleEndian {
		copy(wireBytesInt64(dst), src)
		return
	}
	src = src[:8*len(dst)]
	for i := range dst {
		dst[i] = int64(binary.LittleEndian.Uint64(src[8*i:]))
	}
}

// addInt64s adds s into d (Go's int64 addition wraps around); len(s) ≥ len(d).
func addInt64s(d, s []int64) {
	s = s[:len(d)]
	i := 0
	for ; i+4 <= len(d); i += 4 {
		dd := d[i : i+4 : i+4]
		x := s[i : i+4 : i+4]
		dd[0] += x[0]
		dd[1] += x[1]
		dd[2] += x[2]
		dd[3] += x[3]
	}
	for ; i < len(d); i++ {
		d[i] += s[i]
	}
}
