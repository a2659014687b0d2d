package cluster

import (
	"fmt"
	"net/url"
	"strings"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"

	"github.com/ringtrain/ringtrain/internal/pki"
)

// EtcdConfig configures an embedded etcd member (`ringtrain etcd`,
// `ringtrain local`, tests). URLs are comma-separated lists as on etcd's own
// command line; port 0 picks a free port (single member only).
type EtcdConfig struct {
	// Name is the member name (default "default").
	Name string
	// Dir is the data directory (required).
	Dir string
	// ListenClientURLs (default http://127.0.0.1:2379) and
	// AdvertiseClientURLs (default: the listen URLs).
	ListenClientURLs, AdvertiseClientURLs string
	// ListenPeerURLs (default http://127.0.0.1:2380) and AdvertisePeerURLs
	// (default: the listen URLs).
	ListenPeerURLs, AdvertisePeerURLs string
	// InitialCluster is name=peerURL,... (default: this member alone).
	InitialCluster string
	// ClusterState is "new" (default) or "existing".
	ClusterState string
	// ClusterToken tells clusters apart (default "ringtrain").
	ClusterToken string
	// TLS, when set, is the member's etcd-server certificate, key and the
	// run's CA: clients then need https:// URLs and a certificate of the
	// run's CA (mutual TLS 1.3, etcd's --client-cert-auth), and etcd takes
	// a client's user name from its certificate's CN (see auth.go).
	TLS pki.Files
	// PeerTLS, when set, is the member's etcd-peer certificate, key and the
	// run's CA: the members speak mutual TLS 1.3 to each other (https://
	// peer URLs).
	PeerTLS pki.Files
	// Fast uses a 10 ms heartbeat and 100 ms election timeout (tests and
	// `ringtrain local`); off: etcd's 100 ms / 1000 ms.
	Fast bool
	// StartTimeout bounds waiting for the member to be ready (default 60 s).
	StartTimeout time.Duration
	// Logger receives etcd's logs; default zap.NewNop() (etcd is chatty).
	Logger *zap.Logger
}

// Etcd is a running embedded etcd member.
type Etcd struct {
	e         *embed.Etcd
	endpoints []string
	peers     []string
}

// StartEtcd starts a member and waits until it serves.
func StartEtcd(cfg EtcdConfig) (*Etcd, error) {
	if cfg.Dir == "" {
		return nil, fmt.Errorf("cluster: etcd: empty data directory; give --data-dir")
	}
	ec := embed.NewConfig()
	if cfg.Name != "" {
		ec.Name = cfg.Name
	}
	ec.Dir = cfg.Dir
	var err error
	parse := func(flag, s, def string) []url.URL {
		if err != nil {
			return nil
		}
		if s == "" {
			s = def
		}
		var us []url.URL
		for _, p := range strings.Split(s, ",") {
			u, perr := url.Parse(strings.TrimSpace(p))
			if perr != nil || u.Host == "" {
				err = fmt.Errorf("cluster: etcd: --%s %q: not a URL like http://127.0.0.1:2379", flag, p)
				return nil
			}
			us = append(us, *u)
		}
		return us
	}
	ec.ListenClientUrls = parse("listen-client-urls", cfg.ListenClientURLs, "http://127.0.0.1:2379")
	ec.AdvertiseClientUrls = parse("advertise-client-urls", cfg.AdvertiseClientURLs, urlsString(ec.ListenClientUrls))
	ec.ListenPeerUrls = parse("listen-peer-urls", cfg.ListenPeerURLs, "http://127.0.0.1:2380")
	ec.AdvertisePeerUrls = parse("initial-advertise-peer-urls", cfg.AdvertisePeerURLs, urlsString(ec.ListenPeerUrls))
	if err != nil {
		return nil, err
	}
	ec.InitialCluster = cfg.InitialCluster
	if ec.InitialCluster == "" {
		ec.InitialCluster = ec.InitialClusterFromName(ec.Name)
	}
	if cfg.ClusterState != "" {
		ec.ClusterState = cfg.ClusterState
	}
	ec.InitialClusterToken = "ringtrain"
	if cfg.ClusterToken != "" {
		ec.InitialClusterToken = cfg.ClusterToken
	}
	if cfg.Fast {
		ec.TickMs, ec.ElectionMs = 10, 100
	}
	if cfg.TLS != (pki.Files{}) {
		ec.ClientTLSInfo = tlsInfo(cfg.TLS)
	}
	if cfg.PeerTLS != (pki.Files{}) {
		ec.PeerTLSInfo = tlsInfo(cfg.PeerTLS)
	}
	if cfg.TLS != (pki.Files{}) || cfg.PeerTLS != (pki.Files{}) {
		ec.TlsMinVersion = "TLS1.3"
	}
	lg := cfg.Logger
	if lg == nil {
		lg = zap.NewNop()
	}
	ec.ZapLoggerBuilder = embed.NewZapLoggerBuilder(lg)
	timeout := cfg.StartTimeout
	if timeout <= 0 {
		timeout = time.Minute
	}

	e, err := embed.StartEtcd(ec)
	if err != nil {
		return nil, fmt.Errorf("cluster: start etcd in %s: %w", cfg.Dir, err)
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("cluster: etcd: %w", err)
	case <-t.C:
		e.Close()
		return nil, fmt.Errorf("cluster: etcd not ready after %v (a member of a new cluster waits for a quorum of --initial-cluster)", timeout)
	}
	out := &Etcd{e: e}
	for _, l := range e.Clients {
		ep := l.Addr().String()
		if cfg.TLS != (pki.Files{}) {
			ep = "https://" + ep
		}
		out.endpoints = append(out.endpoints, ep)
	}
	scheme := "http://"
	if cfg.PeerTLS != (pki.Files{}) {
		scheme = "https://"
	}
	for _, p := range e.Peers {
		out.peers = append(out.peers, scheme+p.Addr().String())
	}
	return out, nil
}

// tlsInfo is etcd's mutual-TLS configuration for f: etcd requires and
// verifies a certificate of f.CA from every client (or peer).
func tlsInfo(f pki.Files) transport.TLSInfo {
	return transport.TLSInfo{CertFile: f.Cert, KeyFile: f.Key, TrustedCAFile: f.CA, ClientCertAuth: true}
}

func urlsString(us []url.URL) string {
	s := make([]string, len(us))
	for i, u := range us {
		s[i] = u.String()
	}
	return strings.Join(s, ",")
}

// Endpoints are the client addresses actually bound, for
// clientv3.Config.Endpoints: host:port, or https://host:port with TLS.
func (e *Etcd) Endpoints() []string { return e.endpoints }

// PeerURLs are the peer URLs actually bound.
func (e *Etcd) PeerURLs() []string { return e.peers }

// Err reports a fatal serving error.
func (e *Etcd) Err() <-chan error { return e.e.Err() }

// Close stops the member and waits until it has.
func (e *Etcd) Close() {
	e.e.Close()
	<-e.e.Server.StopNotify()
}
