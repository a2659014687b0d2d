//go:build amd64 || arm64 || 386 || ppc64le

package allreduce

// unalignedLoadsOK: these architectures load unaligned float32s and int64s
// at full speed.
const unalignedLoadsOK = true
