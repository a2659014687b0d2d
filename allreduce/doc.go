// Package allreduce implements the collectives of data-parallel training over a
// ring of N ranks: AllReduce (float32 sum, in place), AllReduceMean,
// AllReduceInt64 (exact int64 sum, in place), Broadcast and Barrier.
//
// # Algorithm
//
// AllReduce is the bandwidth-optimal ring: n−1 reduce-scatter steps then n−1
// all-gather steps (see Schedule), so each rank sends and receives 2(n−1)/n of
// the buffer. The buffer is split into n segments and each segment into parts
// of at most Config.ChunkBytes; a part is forwarded as soon as it has been
// reduced, so sending, receiving and adding overlap. Every rank receives only
// from its left neighbour (rank−1) and sends only to its right (rank+1).
// The sum of each element is computed once, on one rank, and copied to the
// others, so all ranks end with bit-identical buffers.
//
// # Exact sums
//
// A float32 sum depends on the order of its additions, and that order
// depends on the ring: which rank reduces which segment, which follows from
// the number of ranks and their order. Training whose result must not depend
// on the membership (the same bits with 2 workers or 5, in any order)
// sums fixed-point integers instead: AllReduceInt64 adds with wrap-around
// two's-complement int64 arithmetic, which is exact and associative, so
// the result is the same on every rank and for every ring order and
// Config.ChunkBytes. It runs the same ring with the same plans, heartbeats,
// aborts, timeouts and failure semantics as AllReduce; only the element
// changes: 8 little-endian bytes on the wire instead of 4. Plans count
// elements, so an int64 is never split between two messages, and the
// receiver reassembles one that a transport's buffers split.
//
// # Sessions and generations
//
// A Ring is one membership generation (see Session): run id, generation, the
// ordered member addresses and this rank. It never changes; a membership
// change builds a new Ring with a higher generation on the same Transport.
// Every message is keyed by (run, generation, collective sequence, chunk);
// traffic of another run or an older generation is rejected with a
// *GenerationError naming both sides.
//
// # Failure semantics
//
// Every wait is bounded by the caller's context and by Config.PeerTimeout per
// chunk. A rank that detects a failure (timeout, lost stream, protocol error,
// cancelled context) sends an abort to its right neighbour, which forwards it,
// so every survivor's call fails promptly with a *PeerError naming the
// suspected peer. A Ring whose collective failed is unusable: every later call
// returns the original error. Close it and build the next generation.
//
// # Ownership
//
// Collectives read and write the caller's buffer only until they return; they
// keep no reference to it. Calls on one Ring are serialized; all ranks must
// issue the same collectives in the same order with equal buffer lengths.
package allreduce
