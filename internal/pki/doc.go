// Package pki is a training run's certificate authority and the mutual-TLS
// configuration of its processes.
//
// A run has its own CA: a root (the trust anchor every process verifies
// against, ca.pem) and an intermediate that signs the leaves. Each leaf names
// one Identity, a role and an ID (worker "w1", coordinator "c1", an etcd
// server, a client), in a URI SAN spiffe://ringtrain/<run>/<role>/<id> and in
// its common name "<role>:<id>". Leaves are short-lived (DefaultLeafTTL) and
// ECDSA P-256, which etcd and every TLS stack accept.
//
// Contracts:
//   - Trust is the run's root alone: a chain from another CA, an expired or
//     not-yet-valid certificate, or a leaf without an identity is refused.
//   - Host names are never checked: a peer is who its verified certificate
//     says it is (IdentityOf), and callers authorize that identity for what
//     it asks (e.g. a ring rank). etcd server and peer leaves also carry the
//     DNS names and IPs etcd's own clients check.
//   - Configs from a Source are TLS 1.3 only and mutual; they re-read the
//     key pair and the CA bundle when a file's modification time or size
//     changes, so certificates rotate without a restart.
package pki
