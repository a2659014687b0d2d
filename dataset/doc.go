// Package dataset loads training data into memory and decides which examples
// make up each minibatch.
//
// Loading: [LoadMNIST] reads the four IDX files of MNIST (gzip or raw),
// [FindMNIST] locates them, [LoadCSV] reads numeric CSV, [Sine] generates a
// regression set (a [Set] with Targets instead of Labels) and [Load] turns
// the --data flag into a train and a test [Set]. MNIST pixels stay bytes;
// on Linux each image file is decoded once per machine into a checksummed
// file in [CacheDir] ($RINGTRAIN_CACHE_DIR) that every process maps
// read-only and shared, so the workers of a machine hold one copy.
//
// Batching is a pure function of its arguments, so every worker of a ring,
// and a worker restarted from a checkpoint, agrees on the batch without
// talking: [BatchIndices] gives the examples of global minibatch (epoch,
// step), [ShardRange] the slice of it a rank computes, [CursorAt] the
// (epoch, step) of a global optimizer step. The last partial batch of an
// epoch is dropped ([StepsPerEpoch]).
//
// Invariants:
//   - A Set is read-only once loaded; any number of goroutines may read it.
//     [Set.Subset] returns a view that shares memory with its parent.
//   - [Set.Gather] and [Set.GatherTargets] write only into caller-owned
//     buffers and never allocate.
//   - The shuffle is specified here, not borrowed from math/rand: a PCG
//     (math/rand/v2) seeded with (seed, epoch) drives a Fisher-Yates shuffle
//     with Lemire's bounded draw, so a permutation never changes with the Go
//     version. TestPermutationGolden pins it.
//   - Shapes passed to the batching helpers are programmer errors: bad values
//     panic. Bad files and flags are returned as errors wrapping the
//     sentinels in errors.go.
package dataset
