// Package worker is one data-parallel replica of a cluster run.
//
// Its decisions — which generation to join, whose state to take, when to vote
// to end a generation, when to report a failure, finish or exit — are a Core
// (core.go): a deterministic state machine fed Inputs and returning Actions,
// with no I/O and no clock, tested by the transcripts in testdata/. Worker
// (worker.go) is its driver: it owns the etcd client (package cluster), the
// gRPC transport and rings (package allreduce), gossip, the step log,
// metrics and the clock, performs the Core's actions and feeds back their
// outcomes. Each step is a train.Stepper over the generation's ring.
//
// Goroutines: Run owns every goroutine the worker starts (the stop watcher,
// the etcd watches, the progress publisher, the checkpointer's one write in
// flight) and joins each before it returns.
package worker
