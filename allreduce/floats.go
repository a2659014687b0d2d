package allreduce

import (
	"encoding/binary"
	"math"
	"unsafe"
)

// The wire format is little-endian: float32 for AllReduce, Broadcast and
// Barrier, int64 for AllReduceInt64 (see ints.go). On little-endian hosts
// (all the ones we run on) a buffer is sent as its own bytes without a copy.
var nativeLittleEndian = binary.NativeEndian.Uint16([]byte{1, 0}) == 1

// wireBytes returns f as wire bytes. On little-endian hosts the result aliases
// f; otherwise it is a new encoded copy.
func wireBytes(f []float32) []byte {
	if len(f) == 0 {
		return nil
	}
	if nativeLittleEndian {
		return unsafe.Slice((*byte)(unsafe.Pointer(&f[0])), 4*len(f))
	}
	b := make([]byte, 4*len(f))
	for i, v := range f {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
	}
	return b
}

// aligned reports whether b can be viewed in place as a slice of
// size-byte numbers ([]float32, []int64): on a little-endian host when b is
// size-aligned, or at any offset on architectures with cheap unaligned loads
// (received payloads start wherever the transport's frames put them). Go's
// checkptr allows unaligned pointers to pointer-free types.
func aligned(b []byte, size uintptr) bool {
	return nativeLittleEndian && len(b) > 0 && (unalignedLoadsOK || uintptr(unsafe.Pointer(&b[0]))%size == 0)
}

// addLE adds the little-endian float32s in src to dst; len(src) == 4*len(dst).
func addLE(dst []float32, src []byte) {
	if aligned(src, 4) {
		addFloats(dst, unsafe.Slice((*float32)(unsafe.Pointer(&src[0])), len(src)/4))
		return
	}
	src = src[:4*len(dst)]
	for i := range dst {
		dst[i] += math.Float32frombits(binary.LittleEndian.Uint32(src[4*i:]))
	}
}

// copyLE stores the little-endian float32s in src into dst; len(src) == 4*len(dst).
func copyLE(dst []float32, src []byte) {
	if nativeLittleEndian {
		copy(wireBytes(dst), src)
		return
	}
	src = src[:4*len(dst)]
	for i := range dst {
		dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(src[4*i:]))
	}
}
