// Package coordinator owns a run's membership: which workers form the ring,
// in which order, in numbered generations.
//
// The pieces, one file each:
//
//   - schema.go: the etcd key space of a run and its value types.
//   - client.go, registration.go, watch.go: Client, the run's etcd API that
//     workers, coordinators and `ringtrain status` use. Every request is
//     bounded by a timeout; watches and registrations survive etcd outages.
//   - gossip.go: Gossip, a memberlist member (coordinators and workers run
//     one) whose events arrive on a channel: inputs, never mutations.
//   - core.go: Core, the membership state machine. Inputs in, actions out,
//     no I/O, no clock; transcript tests in testdata/core_*.txt.
//   - election.go: Elector/Term, leadership over etcd's concurrency.Election.
//   - coordinator.go, config.go: Coordinator, the driver that feeds etcd
//     watches, gossip events, leadership and ticks into the Core and
//     performs its actions.
//   - embed.go: an embedded etcd member for `ringtrain etcd`/`local` and tests.
//
// Invariants:
//   - Only the leader writes generation, and only in a txn guarded by its
//     election key (Term.Guard), so a deposed leader cannot write.
//   - Generation numbers strictly increase across leaders: a new leader reads
//     the stored generation after winning, and a leader whose write fails
//     steps down rather than guess.
//   - A generation is immutable once published; any change is a new one.
//   - Gossip names of workers are their WorkerInfo.ID; coordinators use
//     GossipName(id).
package coordinator
