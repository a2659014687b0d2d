package main

import (
	"flag"

	"github.com/ringtrain/ringtrain/internal/pki"
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
