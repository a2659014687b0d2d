package pki

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/url"
	"strings"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
)

// Role is what a certificate's holder does in the run.
type Role string

const (
	// RoleWorker is a worker: a ring member, identified by its worker ID.
	RoleWorker Role = "worker"
	// RoleCoordinator is a coordinator replica, identified by its --id.
	RoleCoordinator Role = "coordinator"
	// RoleEtcdServer is an etcd member serving clients.
	RoleEtcdServer Role = "etcd-server"
	// RoleEtcdPeer is an etcd member talking to the other members.
	RoleEtcdPeer Role = "etcd-peer"
	// RoleClient is a tool or operator (ringtrain status, etcdctl).
	RoleClient Role = "client"
)

// Roles lists every role, in the order the certs command writes them.
var Roles = []Role{RoleCoordinator, RoleWorker, RoleEtcdServer, RoleEtcdPeer, RoleClient}

func (r Role) valid() bool {
	for _, x := range Roles {
		if r == x {
			return true
		}
	}
	return false
}

// uriScheme and uriHost make an identity's URI SAN.
const (
	uriScheme = "spiffe"
	uriHost   = "ringtrain"
)

// Identity is who a certificate speaks for.
type Identity struct {
	// Run is the run the certificate was issued for (the CA's run).
	Run string
	// Role and ID name the holder, e.g. worker "w1".
	Role Role
	ID   string
}

// Worker is the identity of worker id of run.
func Worker(run, id string) Identity { return Identity{Run: run, Role: RoleWorker, ID: id} }

// Coordinator is the identity of coordinator id of run.
func Coordinator(run, id string) Identity { return Identity{Run: run, Role: RoleCoordinator, ID: id} }

// String is "<role>:<id>", the common name and how logs and errors name a peer.
func (id Identity) String() string { return string(id.Role) + ":" + id.ID }

// URI is the identity's SAN, spiffe://ringtrain/<run>/<role>/<id>.
func (id Identity) URI() *url.URL {
	return &url.URL{Scheme: uriScheme, Host: uriHost,
		Path:    "/" + id.Run + "/" + string(id.Role) + "/" + id.ID,
		RawPath: "/" + url.PathEscape(id.Run) + "/" + string(id.Role) + "/" + url.PathEscape(id.ID)}
}

// Validate reports a role or name that cannot go into a certificate.
func (id Identity) Validate() error {
	if !id.Role.valid() {
		return fmt.Errorf("pki: unknown role %q; one of %v", id.Role, Roles)
	}
	for _, f := range [][2]string{{"run", id.Run}, {"id", id.ID}} {
		if f[1] == "" || strings.ContainsAny(f[1], "/:") || strings.TrimSpace(f[1]) != f[1] {
			return fmt.Errorf("pki: %s %q must be non-empty, without '/', ':' or surrounding spaces", f[0], f[1])
		}
	}
	return nil
}

// parseURI reads an identity from a URI SAN; ok is false for other URIs.
func parseURI(u *url.URL) (Identity, bool) {
	if u.Scheme != uriScheme || u.Host != uriHost {
		return Identity{}, false
	}
	parts := strings.Split(strings.TrimPrefix(u.Path, "/"), "/")
	if len(parts) != 3 {
		return Identity{}, false
	}
	id := Identity{Run: parts[0], Role: Role(parts[1]), ID: parts[2]}
	if id.Validate() != nil {
		return Identity{}, false
	}
	return id, true
}

// IdentityOf returns the identity a (verified) certificate names in its URI
// SAN; a certificate that names none, or more than one, is ErrNoIdentity.
func IdentityOf(cert *x509.Certificate) (Identity, error) {
	var found []Identity
	for _, u := range cert.URIs {
		if id, ok := parseURI(u); ok {
			found = append(found, id)
		}
	}
	if len(found) != 1 {
		return Identity{}, fmt.Errorf("%w (subject %q, %d identity URIs)", ErrNoIdentity, cert.Subject.CommonName, len(found))
	}
	return found[0], nil
}

// ConnIdentity returns the identity of the peer of a verified TLS connection.
func ConnIdentity(cs tls.ConnectionState) (Identity, error) {
	if len(cs.PeerCertificates) == 0 {
		return Identity{}, ErrNoPeerCertificate
	}
	return IdentityOf(cs.PeerCertificates[0])
}

// PeerIdentity returns the identity of the peer of a gRPC call served over
// TLS (ctx is the call's context); ErrNoPeerCertificate without TLS.
func PeerIdentity(ctx context.Context) (Identity, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return Identity{}, ErrNoPeerCertificate
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return Identity{}, ErrNoPeerCertificate
	}
	return ConnIdentity(info.State)
}
