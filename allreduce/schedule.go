package allreduce

import "fmt"

// Phase is a phase of the ring all-reduce.
type Phase uint8

const (
	// ReduceScatter steps add the received chunk into the local one.
	ReduceScatter Phase = iota + 1
	// AllGather steps overwrite the local chunk with the received, final one.
	AllGather
)

func (p Phase) String() string {
	switch p {
	case ReduceScatter:
		return "reduce-scatter"
	case AllGather:
		return "all-gather"
	}
	return fmt.Sprintf("Phase(%d)", uint8(p))
}

// Step is one step of the ring schedule for one rank: send chunk SendChunk to
// rank To and receive chunk RecvChunk from rank From, at the same time.
type Step struct {
	Phase     Phase
	SendChunk int
	RecvChunk int
	To        int // always Right(n, rank)
	From      int // always Left(n, rank)
}

// Schedule returns the ring all-reduce schedule of rank in a ring of n:
// n−1 reduce-scatter steps then n−1 all-gather steps. The buffer is split into
// n chunks; after the reduce-scatter rank r holds the full sum of chunk
// (r+1) mod n. Step t ≥ 1 sends the chunk received at step t−1. For n = 1 it
// is empty. It panics if n < 1 or rank is outside [0, n).
func Schedule(n, rank int) []Step {
	if n < 1 || rank < 0 || rank >= n {
		panic(fmt.Sprintf("allreduce: Schedule(%d, %d): need n ≥ 1 and 0 ≤ rank < n", n, rank))
	}
	to, from := Right(n, rank), Left(n, rank)
	steps := make([]Step, 0, 2*(n-1))
	for s := 0; s < n-1; s++ {
		steps = append(steps, Step{Phase: ReduceScatter, SendChunk: mod(rank-s, n), RecvChunk: mod(rank-s-1, n), To: to, From: from})
	}
	for s := 0; s < n-1; s++ {
		steps = append(steps, Step{Phase: AllGather, SendChunk: mod(rank+1-s, n), RecvChunk: mod(rank-s, n), To: to, From: from})
	}
	return steps
}

// Right returns the rank that rank sends to in a ring of n.
func Right(n, rank int) int { return mod(rank+1, n) }

// Left returns the rank that rank receives from in a ring of n.
func Left(n, rank int) int { return mod(rank-1, n) }

func mod(a, n int) int { return ((a % n) + n) % n }

// span is a range of buffer elements.
type span struct{ off, len int }

// segment returns chunk c of a buffer of length l split into n near-equal chunks.
func segment(l, n, c int) span {
	base, rem := l/n, l%n
	s := span{off: c*base + min(c, rem), len: base}
	if c < rem {
		s.len++
	}
	return s
}

// part returns part j of k near-equal parts of s.
func part(s span, k, j int) span {
	lo, hi := s.len*j/k, s.len*(j+1)/k
	return span{off: s.off + lo, len: hi - lo}
}

// partsFor returns how many parts a chunk of elems elements is split into so
// that none exceeds maxPart elements (ChunkBytes over the element size: an
// element is never split). At least 1, so that empty chunks still travel
// (keeping every rank's message sequence identical).
func partsFor(elems, maxPart int) int {
	return max(1, (elems+maxPart-1)/maxPart)
}
