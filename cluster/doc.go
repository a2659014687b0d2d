// Package cluster owns a run's data in etcd: the key space and its value
// types, who writes which key, the Client that workers, coordinators and
// tools (`ringtrain status`, `local`, `chaos`) read and write it through,
// registration under leases, the memberlist gossip every process joins, and
// the embedded etcd server. It makes no decisions: electing a leader and
// forming rings is package coordinator's job, training is package worker's.
//
// The pieces, one file each:
//
//   - schema.go: the key space of a run (every key under Prefix(run)) and its
//     values: RunSpec, WorkerInfo, CoordinatorInfo, Generation, CheckpointRef,
//     Progress, Event, Failure.
//   - client.go, watch.go: Client, the run's etcd API. Every request is
//     bounded by a timeout (Client.Bounded); Follow and the watches built on
//     it survive etcd outages, resuming from the last revision seen.
//   - registration.go: Registration, a key kept alive under a lease and put
//     back under a new one when the lease is lost.
//   - snapshot.go: ReadSnapshot, the run's state in one read, which the
//     coordinator's dashboard and `ringtrain status` both show.
//   - gossip.go: Gossip, a memberlist member (coordinators and workers run
//     one) whose events arrive on a channel: inputs, never mutations.
//   - embed.go: an embedded etcd member for `ringtrain etcd`/`local` and tests,
//     with mutual TLS for clients and peers.
//   - auth.go, etcdtls.go: etcd's users and roles (a certificate's CN is its
//     user; a worker may write only its own keys) and the clients' TLS.
//
// Who writes what (etcd's RBAC enforces the split between workers and
// coordinators when auth is on, see auth.go):
//
//	spec                the first coordinator, once (PutSpecIfAbsent); the stored spec wins
//	fingerprint         a coordinator, once, from the first registration of an exact run
//	                    that states one (PutFingerprintIfAbsent); every worker compares its
//	                    own with the stored one, and one that differs exits (before it
//	                    registers when the run already has one)
//	election/           the coordinators' concurrency.Election (package coordinator)
//	coordinators/<id>   each coordinator, under its lease (RegisterCoordinator)
//	generation          the leading coordinator only, in a txn guarded by its
//	                    election key (PutGeneration), so a deposed leader cannot write
//	checkpoint/latest   a coordinator, from the workers' checkpoints/<id>, by
//	                    compare-and-swap so that the highest step wins (PublishCheckpoint)
//	events/             coordinators: membership (the leader) and checkpoints (AddEvent)
//	done                a coordinator, from a worker's finished/<id> (MarkDone)
//	workers/<id>        worker id, under its lease (Register)
//	failures/<id>       worker id, when its collective failed (ReportFailure)
//	progress/<id>       worker id as rank 0, about twice a second (PublishProgress)
//	checkpoints/<id>    worker id, once a checkpoint's files are durable (ReportCheckpoint)
//	finished/<id>       worker id as rank 0 of the ring that finished the run (ReportFinished)
//
// Invariants:
//   - A Generation is immutable once published; any change is a new one with
//     a higher number. Numbers start at 1.
//   - CheckpointRef.Dir names the checkpoint's directory under the checkpoint
//     root, never a path on the writer's machine; each reader resolves it
//     against its own root (CheckpointRef.Path), and refs written by earlier
//     releases (absolute paths) resolve the same way.
//   - Gossip names of workers are their WorkerInfo.ID; coordinators use
//     GossipName(id).
package cluster
