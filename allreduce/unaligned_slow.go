//go:build !(amd64 || arm64 || 386 || ppc64le)

package allreduce

const unalignedLoadsOK = false
