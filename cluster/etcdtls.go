package cluster

import (
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/ringtrain/ringtrain/internal/pki"
	"github.com/ringtrain/ringtrain/internal/usage"
)

// EtcdWantsTLS reports whether endpoints name etcd over TLS: any https://
// URL (etcd's own convention; host:port and http:// are plaintext).
func EtcdWantsTLS(endpoints []string) bool {
	for _, ep := range endpoints {
		if strings.HasPrefix(strings.ToLower(strings.TrimSpace(ep)), "https://") {
			return true
		}
	}
	return false
}

// SecureEtcd sets cfg up for cfg.Endpoints: with https:// endpoints, mutual
// TLS 1.3 with src's certificate (the role's own, whose CN is its etcd user,
// see auth.go), accepting an etcd server whose certificate chains to the
// run's root; plaintext otherwise. https:// endpoints without a certificate
// are a usage error naming flag (where the certificate comes from).
func SecureEtcd(cfg clientv3.Config, src *pki.Source, flag string) (clientv3.Config, error) {
	if !EtcdWantsTLS(cfg.Endpoints) {
		return cfg, nil
	}
	if src == nil {
		return cfg, usage.Errorf("--etcd %s is TLS (https://) but no certificate is given: pass %s (etcd knows this process by its certificate's name)",
			strings.Join(cfg.Endpoints, ","), flag)
	}
	cfg.TLS = src.ClientConfig()
	return cfg, nil
}
