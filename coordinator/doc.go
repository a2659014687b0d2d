// Package coordinator owns a run's membership: which workers form the ring,
// in which order, in numbered generations. The run's data in etcd (its key
// space, the client, registrations, gossip, embedded etcd) is package
// cluster's; the coordinator is one of its writers (the spec, the
// generation, the event log) and reads the rest.
//
// The pieces, one file each:
//
//   - core.go: Core, the membership state machine. Inputs in, actions out,
//     no I/O, no clock; transcript tests in testdata/core_*.txt.
//   - election.go: Elector/Term, leadership over etcd's concurrency.Election.
//   - coordinator.go, config.go: Coordinator, the driver that feeds etcd
//     watches, gossip events, leadership and ticks into the Core and
//     performs its actions.
//   - dashboard.go (and web/): the dashboard, which polls the run's
//     cluster.Snapshot and serves it as a page and as JSON; metrics.go:
//     the run's Prometheus metrics, fed from the same snapshots.
//
// Invariants:
//   - Only the leader writes generation, and only in a txn guarded by its
//     election key (Term.Guard, cluster.Client.PutGeneration), so a deposed
//     leader cannot write.
//   - Generation numbers strictly increase across leaders: a new leader reads
//     the stored generation after winning, and a leader whose write fails
//     steps down rather than guess.
//   - A generation is immutable once published; any change is a new one.
//   - Gossip names of workers are their WorkerInfo.ID; coordinators use
//     cluster.GossipName(id).
package coordinator
