package dataset

import (
	"fmt"
	"math/bits"
	"math/rand/v2"
	"sync"
)

// Cursor is a position in training: global minibatch Step (0-based) of
// Epoch. Its fields and JSON tags match checkpoint.Cursor, so the two
// convert into each other.
type Cursor struct {
	Epoch int `json:"epoch"`
	Step  int `json:"step"`
}

// CursorAt returns the position of global optimizer step globalStep when an
// epoch has stepsPerEpoch steps. It panics if stepsPerEpoch is not positive
// or globalStep is negative.
func CursorAt(globalStep int64, stepsPerEpoch int) Cursor {
	if stepsPerEpoch <= 0 || globalStep < 0 {
		panic(fmt.Sprintf("dataset: CursorAt(%d, %d): want globalStep >= 0 and stepsPerEpoch > 0", globalStep, stepsPerEpoch))
	}
	spe := int64(stepsPerEpoch)
	return Cursor{Epoch: int(globalStep / spe), Step: int(globalStep % spe)}
}

// StepsPerEpoch returns the number of full batches of size batch in n
// examples, floor(n/batch): the last partial batch is dropped. It is 0 when
// n < batch or batch is not positive.
func StepsPerEpoch(n, batch int) int {
	if batch <= 0 || n <= 0 {
		return 0
	}
	return n / batch
}

// BatchIndices returns the example indices of global minibatch step
// (0-based within the epoch) of epoch, a fresh slice of length batch. It is
// a pure function of its arguments.
//
// Without shuffle, batch s is examples s*batch .. s*batch+batch-1 in file
// order. With shuffle, each epoch visits the examples in a permutation of
// 0..n-1 determined by (seed, epoch), and batch s is its s-th slice; the
// batches of an epoch are disjoint.
//
// It is safe for concurrent use: the permutations of the last few
// (n, seed, epoch) are cached behind a mutex. It panics unless
// 0 <= step < StepsPerEpoch(n, batch) and epoch >= 0.
func BatchIndices(n int, seed uint64, epoch, step, batch int, shuffle bool) []int {
	if epoch < 0 || step < 0 || step >= StepsPerEpoch(n, batch) {
		panic(fmt.Sprintf("dataset: BatchIndices(n=%d, epoch=%d, step=%d, batch=%d): want epoch >= 0 and 0 <= step < %d",
			n, epoch, step, batch, StepsPerEpoch(n, batch)))
	}
	idx := make([]int, batch)
	lo := step * batch
	if !shuffle {
		for i := range idx {
			idx[i] = lo + i
		}
		return idx
	}
	copy(idx, permutations.get(n, seed, epoch)[lo:lo+batch])
	return idx
}

// Permutation returns the order in which an epoch visits n examples when
// shuffling: a fresh slice holding a permutation of 0..n-1 that depends
// only on (n, seed, epoch). A PCG seeded with (seed, epoch) drives a
// Fisher-Yates shuffle; see the package documentation.
func Permutation(n int, seed uint64, epoch int) []int {
	perm := make([]int, n)
	for i := range perm {
		perm[i] = i
	}
	src := rand.NewPCG(seed, uint64(epoch))
	for i := n - 1; i > 0; i-- {
		j := boundedUint64(src, uint64(i)+1)
		perm[i], perm[j] = perm[j], perm[i]
	}
	return perm
}

// boundedUint64 returns a uniform value in [0, n) using Lemire's
// multiply-and-reject method. It is spelled out here so that the shuffle
// never changes with the Go version.
func boundedUint64(src *rand.PCG, n uint64) uint64 {
	hi, lo := bits.Mul64(src.Uint64(), n)
	if lo < n {
		thresh := -n % n
		for lo < thresh {
			hi, lo = bits.Mul64(src.Uint64(), n)
		}
	}
	return hi
}

// permCacheSize is how many epoch permutations are kept: enough for a few
// data sets (train, eval) in one process, or workers in a test.
const permCacheSize = 4

type permKey struct {
	n     int
	seed  uint64
	epoch int
}

// permCache memoises Permutation, which is pure, so sharing it across
// goroutines changes no result. Cached slices are never written.
type permCache struct {
	mu      sync.Mutex
	keys    [permCacheSize]permKey
	perms   [permCacheSize][]int
	nextOut int // slot to evict next
}

var permutations permCache

func (c *permCache) get(n int, seed uint64, epoch int) []int {
	key := permKey{n, seed, epoch}
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, k := range c.keys {
		if k == key && c.perms[i] != nil {
			return c.perms[i]
		}
	}
	p := Permutation(n, seed, epoch)
	c.keys[c.nextOut], c.perms[c.nextOut] = key, p
	c.nextOut = (c.nextOut + 1) % permCacheSize
	return p
}

// ShardRange returns the half-open range [lo, hi) of a global batch of size
// batch that rank computes out of world ranks. Shards are contiguous, in
// rank order, cover [0, batch) exactly once and differ in size by at most
// one: the first batch%world ranks get one extra example. When world >
// batch the last ranks get empty shards. It panics unless world > 0,
// 0 <= rank < world and batch >= 0.
func ShardRange(batch, rank, world int) (lo, hi int) {
	if world <= 0 || rank < 0 || rank >= world || batch < 0 {
		panic(fmt.Sprintf("dataset: ShardRange(batch=%d, rank=%d, world=%d): want world > 0, 0 <= rank < world, batch >= 0",
			batch, rank, world))
	}
	base, extra := batch/world, batch%world
	lo = rank*base + min(rank, extra)
	hi = lo + base
	if rank < extra {
		hi++
	}
	return lo, hi
}
