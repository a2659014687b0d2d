package coordinator

import (
	"os"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/ringtrain/ringtrain/cluster"
	"github.com/ringtrain/ringtrain/enroll"
	"github.com/ringtrain/ringtrain/internal/pki"
	"github.com/ringtrain/ringtrain/internal/usage"
	"github.com/ringtrain/ringtrain/train"
)

// Config configures a Coordinator.
type Config struct {
	// Etcd are the etcd client endpoints (host:port or URLs).
	Etcd []string
	// Run names the run; its keys live under cluster.Prefix(Run).
	Run string
	// ID is this coordinator's unique ID (default: the hostname).
	ID string
	// ListenGRPC is the gRPC server, over TLS with the TLS certificate:
	// worker enrollment (on the leader, with CADir) and the health
	// service, both for callers with the run's certificate except Enroll.
	// Empty: no gRPC server.
	ListenGRPC string
	// Advertise is the ListenGRPC address workers dial (empty: the bound
	// one, with the hostname for a wildcard host).
	Advertise string
	// HealthAddr serves the standard gRPC health service in plaintext, and
	// nothing else, for probes without a certificate: the overall service
	// "" is SERVING while Run runs, and HealthServiceLeader is SERVING only
	// while this coordinator leads. Empty: none.
	HealthAddr string
	// TLS are this coordinator's certificate (identity coordinator:<ID>),
	// key and the run's CA (see `ringtrain certs`). Required with
	// ListenGRPC unless Insecure or CADir (the coordinator then issues its
	// own from the intermediate, lifetime EnrollTTL, renewed at half-life).
	TLS pki.Files
	// CADir holds the run's intermediate CA, which signs enrolled workers'
	// certificates: pki.RootFile, pki.IntermediateFile and
	// pki.IntermediateKeyFile (the root's key is never read). Empty: no
	// enrollment.
	CADir string
	// EtcdClients are names of client certificates (`ringtrain certs
	// --clients`) that may read the run in etcd (ringtrain status,
	// ringtrain chaos): with CADir and https:// Etcd, the coordinator adds
	// their users when it provisions etcd at start (cluster.Bootstrap).
	EtcdClients []string
	// EnrollTokenFile holds the bootstrap token a worker's first
	// enrollment carries (httpauth.ReadTokenFile's format). Empty with
	// CADir: renewals only.
	EnrollTokenFile string
	// EnrollToken is the token itself; it wins over EnrollTokenFile (tests).
	EnrollToken string
	// EnrollTTL is the lifetime of enrolled workers' certificates, which
	// they renew at half-life.
	EnrollTTL time.Duration
	// GossipBind is the memberlist host:port (port 0: any free port).
	GossipBind string
	// GossipAdvertise is the host:port others dial (empty: the bound one).
	GossipAdvertise string
	// GossipFast tunes memberlist to declare a dead member in about 1 s
	// (see GossipConfig.Fast); off: memberlist's LAN timings (several s).
	GossipFast bool
	// GossipKeyFile holds the run's gossip key, which every coordinator
	// and worker of the run shares (format: cluster.ParseGossipKey).
	GossipKeyFile string
	// GossipKey is the key itself; it wins over GossipKeyFile (tests).
	GossipKey []byte
	// Insecure allows running without the run's secrets (plain gossip, a
	// plaintext gRPC server without enrollment).
	Insecure bool
	// CheckpointDir is the workers' checkpoint root as mounted on this
	// machine, if it is: the dashboard then shows the latest checkpoint's
	// path and seeds its curves from it. Empty: neither.
	CheckpointDir string
	// HTTPAddr serves the dashboard, /api/snapshot, /metrics and /healthz,
	// read-only (GET and HEAD). Empty: none. The default is on loopback; a
	// container passes its own (e.g. :8080).
	HTTPAddr string
	// HTTPTokenFile holds a token (httpauth.ReadTokenFile) that every HTTP
	// request but /healthz must carry as "Authorization: Bearer <token>".
	HTTPTokenFile string
	// HTTPToken is the token itself; it wins over HTTPTokenFile (tests).
	HTTPToken string
	// Spec is written to etcd only if the run has none; the stored spec wins.
	Spec cluster.RunSpec
	// Tick is the core's unit of time.
	Tick time.Duration
	// DebounceTicks: a membership change is published after this many quiet
	// ticks (bounded by 4×), so a burst of joins makes one generation.
	DebounceTicks int
	// LeaseTTL is the TTL of this coordinator's registration and election
	// session: how long a crashed leader keeps leadership.
	LeaseTTL time.Duration
	// DialTimeout bounds connecting to etcd.
	DialTimeout time.Duration
	// Logger; default zap.NewNop().
	Logger *zap.Logger
	// Elector, if not nil, replaces the etcd election (tests).
	Elector Elector
}

// HealthServiceLeader is the gRPC health service name that is SERVING only
// on the leader.
const HealthServiceLeader = "ringtrain.coordinator.leader"

// DefaultConfig is the production default.
func DefaultConfig() Config {
	host, _ := os.Hostname()
	return Config{
		Etcd:          []string{"127.0.0.1:2379"},
		Run:           cluster.DefaultRun,
		ID:            host,
		ListenGRPC:    ":7000",
		EnrollTTL:     enroll.DefaultTTL,
		GossipBind:    ":7946",
		GossipFast:    true,
		HTTPAddr:      "127.0.0.1:8080",
		Spec:          cluster.RunSpec{Config: train.DefaultConfig().Spec, MinWorkers: 1, HashEvery: 100},
		Tick:          250 * time.Millisecond,
		DebounceTicks: 2,
		LeaseTTL:      10 * time.Second,
		DialTimeout:   5 * time.Second,
	}
}

// TestConfig is DefaultConfig with fast timings and every listener on
// 127.0.0.1 port 0.
func TestConfig(etcd []string, run, id string) Config {
	c := DefaultConfig()
	c.Etcd, c.Run, c.ID = etcd, run, id
	c.ListenGRPC = "" // it serves only over TLS: a test gives certificates
	c.HealthAddr = "127.0.0.1:0"
	c.GossipBind = "127.0.0.1:0"
	c.HTTPAddr = "127.0.0.1:0"
	c.Tick = 20 * time.Millisecond
	c.LeaseTTL = 2 * time.Second
	c.DialTimeout = 2 * time.Second
	c.GossipKey = cluster.NewGossipKey()
	return c
}

// Validate checks the fields and the rules between them.
func (c Config) Validate() error {
	if len(c.Etcd) == 0 {
		return usage.New("--etcd is empty; give the etcd endpoints, e.g. --etcd 10.0.0.1:2379,10.0.0.2:2379")
	}
	if c.Run == "" || strings.ContainsAny(c.Run, "/ \t\n") {
		return usage.Errorf("--run %q must be a non-empty name without slashes or spaces", c.Run)
	}
	if c.ID == "" || strings.ContainsAny(c.ID, "/ \t\n") {
		return usage.Errorf("--id %q must be a non-empty name without slashes or spaces", c.ID)
	}
	for _, a := range []struct {
		flag, value, example string
		optional             bool
	}{
		{"--listen", c.ListenGRPC, ":7000", true},
		{"--advertise", c.Advertise, "10.0.0.2:7000", true},
		{"--gossip-listen", c.GossipBind, ":7946", false},
		{"--gossip-advertise", c.GossipAdvertise, "10.0.0.2:7946", true},
		{"--http-addr", c.HTTPAddr, "127.0.0.1:8080", true},
	} {
		if err := usage.HostPort(a.flag, a.value, a.optional, a.example); err != nil {
			return err
		}
	}
	if c.Tick <= 0 {
		return usage.Errorf("tick %v must be positive", c.Tick)
	}
	if c.DebounceTicks < 1 {
		return usage.Errorf("debounce ticks %d must be at least 1", c.DebounceTicks)
	}
	if c.LeaseTTL < time.Second {
		return usage.Errorf("lease TTL %v must be at least 1s (etcd leases have whole seconds)", c.LeaseTTL)
	}
	if c.DialTimeout <= 0 {
		return usage.Errorf("dial timeout %v must be positive", c.DialTimeout)
	}
	if err := c.Spec.Validate(); err != nil {
		return err
	}
	if c.GossipKeyFile == "" {
		if err := cluster.CheckGossipKey(c.GossipKey, c.Insecure); err != nil {
			return err
		}
	}
	if c.ListenGRPC != "" && c.TLS == (pki.Files{}) && c.CADir == "" && !c.Insecure {
		return usage.Errorf("--tls-dir is not set: the gRPC server (--listen %s) serves only over TLS; create the files with "+
			"`ringtrain certs --out DIR --coordinators %s` and pass --tls-dir DIR/coordinator/%s, or pass --insecure on a trusted network", c.ListenGRPC, c.ID, c.ID)
	}
	if c.CADir != "" && c.ListenGRPC == "" {
		return usage.Errorf("--ca-dir %s: workers enroll over TLS on --listen; give --listen too", c.CADir)
	}
	if (c.EnrollTokenFile != "" || c.EnrollToken != "") && c.CADir == "" {
		return usage.Errorf("--enroll-token-file needs --ca-dir, the intermediate CA that signs the enrolled workers' certificates")
	}
	for _, n := range c.EtcdClients {
		if err := (pki.Identity{Run: c.Run, Role: pki.RoleClient, ID: n}).Validate(); err != nil {
			return usage.Errorf("--etcd-clients %q cannot name a client certificate: use letters, digits, '-', '_' or '.', as `ringtrain certs --clients` does", n)
		}
	}
	if len(c.EtcdClients) > 0 && c.CADir == "" {
		return usage.Errorf("--etcd-clients %s needs --ca-dir: a coordinator provisions etcd only where it holds the run's intermediate CA", strings.Join(c.EtcdClients, ","))
	}
	if c.CADir != "" && c.EnrollTTL < 2*time.Minute {
		return usage.Errorf("--enroll-ttl %v is too short; workers renew at half-life: give at least 2m, e.g. --enroll-ttl 1h", c.EnrollTTL)
	}
	return nil
}
