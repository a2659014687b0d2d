package cluster

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/ringtrain/ringtrain/internal/usage"
	"github.com/ringtrain/ringtrain/train"
)

// The etcd key space of one run. Every key lives under Prefix(run):
//
//	spec                 RunSpec: the training config and worker bounds (written once)
//	fingerprint          train.Fingerprint: what besides the spec changes exact training's bits (GEMM
//	                     backend and kernel, threads, GOARCH, the training data's digest); written once,
//	                     from the first registration of an exact run that states one. Delete it to move
//	                     a run to other machines on purpose (its steps then differ in the last bits
//	                     from those already trained).
//	election/            concurrency.Election of the coordinators
//	coordinators/<id>    CoordinatorInfo, under the coordinator's lease
//	generation           Generation: the current ring (written by the leader)
//	checkpoint/latest    CheckpointRef: the newest durable checkpoint, relative to the checkpoint root (compare-and-swap)
//	events/<unix nanos>  Event: membership, checkpoint and recovery events (the last 200 kept)
//	done                 train.Summary: the run finished
//
// and each worker's own keys, <kind>/<worker ID>, which only that worker
// writes (WorkerKeys; etcd's RBAC enforces it, see auth.go):
//
//	workers/<id>         WorkerInfo, under the worker's lease (with its fingerprint)
//	failures/<id>        Failure: its report that its generation failed (its latest)
//	progress/<id>        Progress: the ring's step, written by rank 0 about twice a second
//	checkpoints/<id>     CheckpointRef: the newest checkpoint it made durable
//	finished/<id>        train.Summary: it finished the run as rank 0
//
// The coordinators turn the last two into the run's checkpoint/latest and
// done (and a first registration's fingerprint into fingerprint).
// progress (without /<id>) is the ring's step as older releases wrote it:
// still read, never written.
const (
	KeySpec         = "spec"
	KeyFingerprint  = "fingerprint"
	KeyElection     = "election/"
	KeyCoordinators = "coordinators/"
	KeyWorkers      = "workers/"
	KeyGeneration   = "generation"
	KeyCheckpoint   = "checkpoint/latest"
	KeyProgress     = "progress/"
	KeyEvents       = "events/"
	KeyFailures     = "failures/"
	KeyCheckpoints  = "checkpoints/"
	KeyFinished     = "finished/"
	KeyDone         = "done"

	// keyOldProgress is the single progress key of older releases.
	keyOldProgress = "progress"
)

// WorkerKeys are the keys (names under Prefix(run)) that worker id writes,
// and the only ones it may: each is one exact key, so the grant of worker
// "w1" never covers "w10".
func WorkerKeys(id string) []string {
	return []string{KeyWorkers + id, KeyFailures + id, KeyProgress + id, KeyCheckpoints + id, KeyFinished + id}
}

// DefaultRun is the run name when --run is not given.
const DefaultRun = "default"

// Prefix is the etcd prefix of a run's keys.
func Prefix(run string) string { return "/ringtrain/" + run + "/" }

// Key is the full etcd key of name in run.
func Key(run, name string) string { return Prefix(run) + name }

// RunSpec is what a run trains and on how many workers.
type RunSpec struct {
	// Config is the run-wide training spec. Machine-local settings (data
	// path, checkpoint root, --init, threads) are each worker's flags; a
	// spec written by an older release that still names them loads, and
	// they are ignored.
	Config train.Spec `json:"config"`
	// MinWorkers: below this many live workers the run waits.
	MinWorkers int `json:"min_workers"`
	// MaxWorkers caps the ring; further workers stand by (0: no cap).
	MaxWorkers int `json:"max_workers"`
	// HashEvery compares a parameter hash across the ring every this many steps.
	HashEvery int `json:"hash_every"`
}

// Validate checks the spec; errors name the flag and the value.
func (s RunSpec) Validate() error {
	if err := s.Config.Validate(); err != nil {
		return err
	}
	if s.MinWorkers < 1 {
		return usage.Errorf("--min-workers %d must be at least 1", s.MinWorkers)
	}
	if s.MaxWorkers != 0 && s.MaxWorkers < s.MinWorkers {
		return usage.Errorf("--max-workers %d is below --min-workers %d; raise it or use 0 for no cap", s.MaxWorkers, s.MinWorkers)
	}
	if s.HashEvery < 0 {
		return usage.Errorf("--hash-every %d must not be negative", s.HashEvery)
	}
	return nil
}

// WorkerInfo is a worker's registration.
type WorkerInfo struct {
	ID string `json:"id"`
	// Addr is the worker's gRPC address (collectives, control, health).
	Addr string `json:"addr"`
	// Gossip is the worker's memberlist address.
	Gossip string `json:"gossip"`
	// HTTP is the worker's metrics address, if any.
	HTTP    string    `json:"http,omitempty"`
	Started time.Time `json:"started"`
	// Fingerprint is what can change the bits of exact training on this
	// worker (zero in float mode, and from earlier releases).
	Fingerprint train.Fingerprint `json:"fingerprint,omitzero"`
}

// CoordinatorInfo is a coordinator's registration.
type CoordinatorInfo struct {
	ID     string `json:"id"`
	Gossip string `json:"gossip"`
	HTTP   string `json:"http,omitempty"`
	// GRPC is the address workers enroll at (empty: no gRPC server).
	GRPC    string    `json:"grpc,omitempty"`
	Started time.Time `json:"started"`
}

// Member is one rank of a generation.
type Member struct {
	ID   string `json:"id"`
	Addr string `json:"addr"`
}

// Generation is one immutable ring: its number and its ordered members
// (rank = index). A membership change publishes a new one; an empty member
// list means the run is waiting for workers. Numbers start at 1: a zero
// Gen means that none was published yet.
type Generation struct {
	Gen     uint64    `json:"gen"`
	Members []Member  `json:"members"`
	Reason  string    `json:"reason"`
	Leader  string    `json:"leader"`
	Created time.Time `json:"created"`
}

// Rank is id's rank in g, or -1.
func (g Generation) Rank(id string) int {
	for i, m := range g.Members {
		if m.ID == id {
			return i
		}
	}
	return -1
}

// Addrs are the members' addresses in rank order.
func (g Generation) Addrs() []string {
	out := make([]string, len(g.Members))
	for i, m := range g.Members {
		out[i] = m.Addr
	}
	return out
}

// String is the ring order for logs, e.g. "gen 3 [w1 w2 w3]".
func (g Generation) String() string {
	ids := make([]string, len(g.Members))
	for i, m := range g.Members {
		ids[i] = m.ID
	}
	return fmt.Sprintf("gen %d [%s]", g.Gen, strings.Join(ids, " "))
}

// CheckpointRef points at a durable checkpoint (the value of
// checkpoint/latest).
type CheckpointRef struct {
	Step int64 `json:"step"`
	// Dir names the checkpoint's directory relative to the checkpoint root
	// (e.g. "step-00004680"), not a path on the writer's machine: every
	// process mounts the root where its own --checkpoint-dir says. Resolve
	// it with Path. Refs written by earlier releases hold an absolute path
	// here; Path resolves those too.
	Dir  string    `json:"dir"`
	Gen  uint64    `json:"gen"`
	Time time.Time `json:"time"`
	// ParamsSHA256 is the checkpoint's parameter hash (see train.State.ParamsSHA256).
	ParamsSHA256 string `json:"params_sha256,omitempty"`
}

// Name is Dir relative to the checkpoint root: its last element, as a
// checkpoint directory is always a child of the root (named alike on every
// machine). So a ref of the old format, "/old/root/step-00004680", names
// "step-00004680" too. "" when Dir is empty.
func (r CheckpointRef) Name() string {
	if r.Dir == "" {
		return ""
	}
	return filepath.Base(r.Dir)
}

// Path is the checkpoint's directory under root, the reader's own
// checkpoint root (its --checkpoint-dir): root joined with Name(), for refs
// of either format. With an empty root it is Name(); with an empty Dir, "".
func (r CheckpointRef) Path(root string) string {
	name := r.Name()
	if name == "" {
		return ""
	}
	return filepath.Join(root, name)
}

// Progress is the ring's position, published by rank 0.
type Progress struct {
	Gen           uint64  `json:"gen"`
	Step          int64   `json:"step"`
	TotalSteps    int64   `json:"total_steps"`
	Epoch         int     `json:"epoch"`
	Loss          float64 `json:"loss"`
	TestLoss      float64 `json:"test_loss,omitempty"`
	TestAccuracy  float64 `json:"test_accuracy,omitempty"`
	SamplesPerSec float64 `json:"samples_per_sec"`
	Workers       int     `json:"workers"`
	// ComputeMs is each rank's compute time in the last step (its arrival
	// at the all-reduce), so a straggler is visible.
	ComputeMs []float64 `json:"compute_ms,omitempty"`
	Time      time.Time `json:"time"`
}

// Event is a membership or recovery event.
type Event struct {
	Time   time.Time `json:"time"`
	Kind   string    `json:"kind"` // joined, left, failed, generation, leader, checkpoint, recovered
	Who    string    `json:"who,omitempty"`
	Gen    uint64    `json:"gen,omitempty"`
	Step   int64     `json:"step,omitempty"`
	Detail string    `json:"detail,omitempty"`
}

// Failure is a worker's report that a collective of generation Gen failed
// on it. The leader answers a report about the current generation with a
// new generation (after a grace period in which gossip may exclude the
// suspect), even when no member left.
type Failure struct {
	Reporter string `json:"reporter"`
	Gen      uint64 `json:"gen"`
	// Suspect is the member the reporter blames, if any (informational:
	// only gossip and leases exclude workers).
	Suspect string    `json:"suspect,omitempty"`
	Error   string    `json:"error"`
	Time    time.Time `json:"time"`
}

// Marshal is json.Marshal for the schema's values, which cannot fail.
func Marshal(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}
