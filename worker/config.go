package worker

import (
	"os"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/ringtrain/ringtrain/cluster"
	"github.com/ringtrain/ringtrain/internal/pki"
	"github.com/ringtrain/ringtrain/internal/usage"
)

// Config is one worker process.
type Config struct {
	// Etcd are the etcd client endpoints.
	Etcd []string
	// Run names the training run (the etcd prefix).
	Run string
	// ID is the worker's stable name; a restarted worker keeps it.
	ID string
	// Listen is the gRPC address (collectives, health); port 0 picks one.
	Listen string
	// Advertise is the address peers dial; empty derives it from Listen
	// (the listener's address, or hostname:port for a wildcard host).
	Advertise string
	// GossipListen and GossipAdvertise are the memberlist addresses.
	GossipListen    string
	GossipAdvertise string
	// GossipKeyFile holds the run's gossip key, which every coordinator
	// and worker of the run shares (format: cluster.ParseGossipKey).
	GossipKeyFile string
	// GossipKey is the key itself; it wins over GossipKeyFile (tests).
	GossipKey []byte
	// Insecure allows running without the run's secrets (plain gossip).
	Insecure bool
	// TLS are the worker's certificate (identity worker:<ID>), key and the
	// run's CA (see `ringtrain certs`): the ring then speaks mutual TLS and
	// accepts each rank's stream only from that rank's member. Required
	// unless Insecure or the worker enrolls (TLS.CA and an enroll token,
	// without Cert and Key).
	TLS pki.Files
	// EnrollTokenFile holds the run's bootstrap token: with TLS.CA and no
	// certificate, the worker enrolls with the leading coordinator at start
	// for a short-lived certificate, which it renews at half-life.
	EnrollTokenFile string
	// EnrollToken is the token itself; it wins over EnrollTokenFile (tests).
	EnrollToken string
	// EnrollAddrs are the coordinators' gRPC addresses to enroll at, asked
	// in turn until the leader answers; empty: the leader's registered
	// address from etcd (an etcd readable without a certificate).
	EnrollAddrs []string
	// HealthAddr serves the ring's gRPC health service in plaintext, and
	// nothing else, for probes without a certificate. Empty: none.
	HealthAddr string
	// HTTPAddr serves /metrics and /healthz, read-only (GET and HEAD);
	// empty disables it. The default is on loopback; a container passes
	// its own (e.g. :9090).
	HTTPAddr string
	// HTTPTokenFile holds a token (httpauth.ReadTokenFile) that every HTTP
	// request but /healthz must carry as "Authorization: Bearer <token>".
	HTTPTokenFile string
	// HTTPToken is the token itself; it wins over HTTPTokenFile (tests).
	HTTPToken string
	// CheckpointDir is where checkpoints are written (rank 0) and read on a
	// full restart; it is shared by all workers (a volume).
	CheckpointDir string
	// Data is the training data on this machine (default mnist).
	Data string
	// Init is a model.safetensors or checkpoint directory to start from
	// when there is no checkpoint yet.
	Init string
	// Threads is the BLAS thread count (0: 1).
	Threads int
	// PeerTimeout bounds every wait on a peer inside a collective.
	PeerTimeout time.Duration
	// LeaseTTL is the etcd registration lease.
	LeaseTTL time.Duration
	// FastGossip tunes failure detection for one machine (about a second).
	FastGossip bool
	// StepLog, if set, receives one JSON line per applied step and per
	// state transfer: the record fault tests check for gaps and repeats.
	StepLog string
	// Logger is the worker's logger; default zap.NewNop().
	Logger *zap.Logger
}

// DefaultConfig is the production default.
func DefaultConfig() Config {
	host, _ := os.Hostname()
	return Config{
		Run:          cluster.DefaultRun,
		ID:           host,
		Listen:       ":7070",
		GossipListen: ":7946",
		HTTPAddr:     "127.0.0.1:9090",
		PeerTimeout:  5 * time.Second,
		LeaseTTL:     10 * time.Second,
		FastGossip:   true,
	}
}

// Validate checks the config; errors name the flag, the value and the fix.
func (c Config) Validate() error {
	switch {
	case len(c.Etcd) == 0:
		return usage.Errorf("--etcd is required, e.g. --etcd http://127.0.0.1:2379")
	case c.Run == "":
		return usage.Errorf("--run is empty; give the run's name, e.g. --run default")
	case c.ID == "" || strings.ContainsAny(c.ID, "/ \t\n:"):
		return usage.Errorf("--id %q must be a non-empty name without slashes, colons or spaces; give the worker a stable name, e.g. --id worker-1", c.ID)
	case c.Listen == "":
		return usage.Errorf("--listen is empty; give a host:port, e.g. --listen :7070")
	case c.PeerTimeout <= 0:
		return usage.Errorf("--peer-timeout %v must be positive, e.g. --peer-timeout 5s", c.PeerTimeout)
	case c.LeaseTTL < time.Second:
		return usage.Errorf("--lease-ttl %v must be at least 1s", c.LeaseTTL)
	case c.Threads < 0:
		return usage.Errorf("--threads %d must not be negative", c.Threads)
	}
	for _, a := range []struct {
		flag, value, example string
		optional             bool
	}{
		{"--listen", c.Listen, ":7070", false},
		{"--advertise", c.Advertise, "10.0.0.5:7070", true},
		{"--gossip-listen", c.GossipListen, ":7946", false},
		{"--gossip-advertise", c.GossipAdvertise, "10.0.0.5:7946", true},
		{"--http-addr", c.HTTPAddr, "127.0.0.1:9090", true},
	} {
		if err := usage.HostPort(a.flag, a.value, a.optional, a.example); err != nil {
			return err
		}
	}
	if (c.EnrollTokenFile != "" || c.EnrollToken != "") && !c.enrolls() {
		if c.TLS.CA == "" {
			return usage.Errorf("--enroll-token-file needs --tls-ca, the run's ca.pem, to check the coordinator it enrolls with")
		}
		return usage.Errorf("--enroll-token-file and a certificate (--tls-dir, --tls-cert, --tls-key) exclude each other: enroll, or bring the certificate")
	}
	if c.GossipKeyFile == "" {
		return cluster.CheckGossipKey(c.GossipKey, c.Insecure)
	}
	return nil
}
