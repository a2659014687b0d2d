package main

import (
	"flag"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/ringtrain/ringtrain/cluster"
	"github.com/ringtrain/ringtrain/internal/pki"
	"github.com/ringtrain/ringtrain/internal/usage"
)

// registerTLSFlags adds --tls-dir, --tls-cert, --tls-key and --tls-ca,
// which fill f. --tls-dir DIR stands for DIR/cert.pem, DIR/key.pem and
// DIR/ca.pem (one identity's directory from `ringtrain certs`); an explicit
// --tls-cert, --tls-key or --tls-ca wins over it, in any order.
func registerTLSFlags(fs *flag.FlagSet, f *pki.Files, role pki.Role) {
	var set pki.Files // what was given explicitly
	fs.Func("tls-dir", "directory of this "+string(role)+"'s certificate: cert.pem, key.pem, ca.pem, as 'ringtrain certs --out DIR' writes\n"+
		"them in DIR/"+string(role)+"/<id>; required unless --insecure", func(dir string) error {
		d := pki.DirFiles(dir)
		for _, p := range []struct {
			dst, given *string
			v          string
		}{{&f.Cert, &set.Cert, d.Cert}, {&f.Key, &set.Key, d.Key}, {&f.CA, &set.CA, d.CA}} {
			if *p.given == "" {
				*p.dst = p.v
			}
		}
		return nil
	})
	for _, x := range []struct {
		name, help string
		dst, given *string
	}{
		{"tls-cert", "this " + string(role) + "'s certificate chain (PEM), instead of --tls-dir's cert.pem", &f.Cert, &set.Cert},
		{"tls-key", "its private key (PEM), instead of --tls-dir's key.pem", &f.Key, &set.Key},
		{"tls-ca", "the run's CA certificate (PEM), instead of --tls-dir's ca.pem", &f.CA, &set.CA},
	} {
		fs.Func(x.name, x.help, func(p string) error {
			*x.dst, *x.given = p, p
			return nil
		})
	}
}

// etcdClientTLS sets cfg up for a tool's etcd client (status): with
// https:// endpoints, mutual TLS with f's certificate, whose name is the
// tool's etcd user (a client the coordinators' --etcd-clients names, or a
// coordinator's own); plaintext otherwise. A missing or unreadable
// certificate is a usage error naming the flag, the value and the fix.
func etcdClientTLS(cfg clientv3.Config, f pki.Files) (clientv3.Config, error) {
	if !cluster.EtcdWantsTLS(cfg.Endpoints) {
		if f != (pki.Files{}) {
			return cfg, usage.Errorf("--tls-dir is given but --etcd %s is plaintext; give https:// endpoints (etcd with --client-cert-auth) or drop --tls-dir",
				(*etcdFlag)(&cfg.Endpoints).String())
		}
		return cfg, nil
	}
	if f == (pki.Files{}) {
		return cluster.SecureEtcd(cfg, nil, "--tls-dir DIR/client/NAME (as 'ringtrain certs --clients NAME' writes it)")
	}
	for _, x := range [][2]string{{"--tls-cert", f.Cert}, {"--tls-key", f.Key}, {"--tls-ca", f.CA}} {
		if x[1] == "" {
			return cfg, usage.Errorf("%s is not set; give it, or --tls-dir DIR/client/NAME with cert.pem, key.pem and ca.pem", x[0])
		}
	}
	src, err := pki.NewSource(f)
	if err != nil {
		return cfg, usage.Errorf("--tls-dir (--tls-cert %s): %v; give a client's directory as 'ringtrain certs --out DIR --clients NAME' writes it (DIR/client/NAME)", f.Cert, err)
	}
	return cluster.SecureEtcd(cfg, src, "--tls-dir")
}
