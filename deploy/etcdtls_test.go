package deploy_test

import (
	"strings"
	"testing"
)

// checkEtcdSecure requires an etcd member's command line (compose or
// Kubernetes) to serve clients and peers over mutual TLS 1.3 only, with
// certificate, key and CA files that secret accepts (files from where the
// deployment keeps its secrets). Auth is turned on by the coordinators
// (checkProvisioner), not by etcd's flags.
func checkEtcdSecure(t *testing.T, where string, p parsedArgs, secret func(file string) bool) {
	t.Helper()
	var urls []string
	for _, f := range []string{"listen-client-urls", "advertise-client-urls", "listen-peer-urls", "initial-advertise-peer-urls"} {
		urls = append(urls, strings.Split(p.Flags[f], ",")...)
	}
	for _, m := range strings.Split(p.Flags["initial-cluster"], ",") {
		_, u, _ := strings.Cut(m, "=")
		urls = append(urls, u)
	}
	for _, u := range urls {
		if !strings.HasPrefix(u, "https://") {
			t.Errorf("%s: etcd URL %q is plaintext; clients and peers must use https://", where, u)
		}
	}
	for _, f := range []string{"client-cert-auth", "peer-client-cert-auth"} {
		if p.Flags[f] != "true" {
			t.Errorf("%s: want --%s=true (etcd names its users by their certificates; without it anyone with a TLS client gets in)", where, f)
		}
	}
	for _, f := range []string{"cert-file", "key-file", "trusted-ca-file", "peer-cert-file", "peer-key-file", "peer-trusted-ca-file"} {
		switch v := p.Flags[f]; {
		case v == "":
			t.Errorf("%s: no --%s", where, f)
		case !secret(v):
			t.Errorf("%s: --%s %s is not on a volume of the run's secrets", where, f, v)
		}
	}
	if v := p.Flags["tls-min-version"]; v != "TLS1.3" {
		t.Errorf("%s: --tls-min-version %q, want TLS1.3 (as every ringtrain process speaks)", where, v)
	}
}

// checkProvisioner requires a coordinator that talks to etcd over TLS to
// hold the intermediate CA (--ca-dir): with it the coordinator provisions
// etcd's users and turns auth on at start, and adds each enrolled worker's
// user; without one, nothing would.
func checkProvisioner(t *testing.T, where string, p parsedArgs) {
	t.Helper()
	if !strings.HasPrefix(p.Flags["etcd"], "https://") {
		t.Errorf("%s: --etcd %q is plaintext; want the https:// endpoints of the TLS etcd", where, p.Flags["etcd"])
	}
	if p.Flags["ca-dir"] == "" {
		t.Errorf("%s: a coordinator without --ca-dir cannot provision etcd's users nor turn its auth on", where)
	}
}
