// Package enroll gives workers their certificates at start and renews them.
//
// Workers come and go (compose --scale, a StatefulSet), so none is issued a
// certificate in advance. A new worker makes a key and a certificate
// request, and asks the leading coordinator over TLS that authenticates the
// coordinator only (the worker has no certificate yet) to sign it, proving
// itself with the run's bootstrap token. The coordinator holds the run's
// intermediate CA key, never the root's, and issues a short-lived leaf
// worker:<id> over the request's key. Before half its life has passed the
// worker asks again over mutual TLS, authenticated by the certificate it
// holds, without the token.
//
// Contracts:
//   - Only the leading coordinator issues; a standby answers Unavailable.
//   - A first enrollment needs the token, a valid worker ID, and that no
//     live worker holds that ID (its registration in etcd): no one takes a
//     live member's identity. A renewal needs the caller's verified
//     certificate to be the identity it renews.
//   - The identity is the issuer's decision; a request's subject and SANs
//     are ignored, its key must be ECDSA P-256 and signed.
//   - Issued leaves live at most ServerConfig.TTL.
package enroll
