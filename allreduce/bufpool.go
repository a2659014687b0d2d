package allreduce

import (
	"math/bits"
	"sync"
)

// Payload buffers of received messages come from size-classed pools (powers
// of two from 1 KiB to 32 MiB) and go back once the ring has consumed them,
// so that steady-state collectives do not allocate per chunk. This is a cache
// only: any []byte may be released, and a buffer not released is collected.
const (
	minPoolShift = 10
	maxPoolShift = 25
)

var payloadPools [maxPoolShift + 1]sync.Pool

// getPayload returns a buffer of length n.
func getPayload(n int) []byte {
	if n == 0 {
		return nil
	}
	shift := max(minPoolShift, bits.Len(uint(n-1)))
	if shift > maxPoolShift {
		return make([]byte, n)
	}
	if p, ok := payloadPools[shift].Get().(*[]byte); ok {
		return (*p)[:n]
	}
	return make([]byte, n, 1<<shift)
}

// putPayload hands b back for reuse; b must not be used afterwards.
func putPayload(b []byte) {
	c := cap(b)
	if c == 0 || c&(c-1) != 0 {
		return
	}
	shift := bits.Len(uint(c)) - 1
	if shift < minPoolShift || shift > maxPoolShift {
		return
	}
	b = b[:0]
	payloadPools[shift].Put(&b)
}
