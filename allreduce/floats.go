package allreduce

import (
	"encoding/binary"
	"math"
	"unsafe"
)

// The wire format is little-endian float32. On little-endian hosts (all the
// ones we run on) a []float32 is sent as its own bytes without a copy.
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

// aligned reports whether b can be viewed as []float32 in place: on a
// little-endian host when b is 4-aligned, or at any offset on architectures
// with cheap unaligned loads (received payloads start wherever the
// transport's frames put them). Go's checkptr allows unaligned pointers to
// pointer-free types.
func aligned(b []byte) bool {
	return nativeLittleEndian && len(b) > 0 && (unalignedLoadsOK || uintptr(unsafe.Pointer(&b[0]))%4 == 0)
}

// addLE adds the little-endian float32s in src to dst; len(src) == 4*len(dst).
func addLE(dst []float32, src []byte) {
	if aligned(src) {
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

// applyParts adds (add) or copies the little-endian float32s spread over
// parts into dst; a float may straddle two parts.
func applyParts(dst []float32, parts [][]byte, add bool) {
	var carry [4]byte
	nc := 0
	for _, p := range parts {
		if nc > 0 {
			k := copy(carry[nc:], p)
			nc += k
			p = p[k:]
			if nc < 4 {
				continue
			}
			v := math.Float32frombits(binary.LittleEndian.Uint32(carry[:]))
			if add {
				dst[0] += v
			} else {
				dst[0] = v
			}
			dst = dst[1:]
			nc = 0
		}
		n := len(p) / 4
		if add {
			addLE(dst[:n], p[:4*n])
		} else {
			copyLE(dst[:n], p[:4*n])
		}
		dst = dst[n:]
		nc = copy(carry[:], p[4*n:])
	}
}
