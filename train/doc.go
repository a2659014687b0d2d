// Package train owns what one replica trains and how one step goes.
//
//   - Config is a process's configuration: the run-wide Spec (what is
//     trained: network, optimizer, schedule, batch, length, seed, cadence —
//     the part stored in etcd and in every checkpoint manifest) and the
//     machine-local Local (data path, checkpoint root, --init file, threads —
//     never stored). Flags and YAML/JSON config files fill both with flat keys.
//   - State is a replica: network, optimizer, the number of steps applied,
//     and how it is saved, restored, flattened for a state transfer and hashed.
//   - Stepper is the training step, the one place it is written: this rank's
//     shard of the global batch forward and backward, the reduction of the
//     step Vector (the gradient, then control values: the loss sum, the votes
//     to end a generation, each rank's compute time) through a Reducer, the
//     non-finite check (ErrNonFinite), the optimizer step, and the cadence of
//     evaluations and checkpoints. `ringtrain train` drives it with
//     SingleProcess, a cluster worker with RingReducer, and `ringtrain bench
//     train` with either, so the three cannot drift.
//   - Run is single-process training; History and the plot are the run's
//     curves.
//
// A Stepper sets its State's Net.Grads to the gradient part of its Vector, so
// the reduction happens where backward wrote; a Stepper is bound to one
// Reducer (one generation) and is not safe for concurrent use.
package train
