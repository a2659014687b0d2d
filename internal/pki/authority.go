package pki

import (
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"net"
	"net/url"
	"time"
)

// Default lifetimes: leaves are short-lived and rotated (a Source reloads
// them); the intermediate outlives many rotations; the root, many
// intermediates.
const (
	DefaultRootTTL         = 365 * 24 * time.Hour
	DefaultIntermediateTTL = 90 * 24 * time.Hour
	DefaultLeafTTL         = 24 * time.Hour
	// backdate absorbs clock skew between the issuer and the verifiers.
	backdate = 5 * time.Minute
)

// Authority is a run's CA: the root, and the intermediate that signs leaves.
// A loaded Authority may lack the root key; it still issues leaves.
type Authority struct {
	Run          string
	Root         *x509.Certificate
	Intermediate *x509.Certificate
	rootKey      crypto.Signer // nil when loaded without it
	key          crypto.Signer // the intermediate's
}

// NewAuthority creates a root and an intermediate for run, valid from now
// for rootTTL and intermediateTTL (zero: the defaults).
func NewAuthority(run string, now time.Time, rootTTL, intermediateTTL time.Duration) (*Authority, error) {
	if err := (Identity{Run: run, Role: RoleClient, ID: "ca"}).Validate(); err != nil {
		return nil, err
	}
	if rootTTL <= 0 {
		rootTTL = DefaultRootTTL
	}
	if intermediateTTL <= 0 {
		intermediateTTL = DefaultIntermediateTTL
	}
	rootKey, err := newKey()
	if err != nil {
		return nil, err
	}
	rootTmpl, err := caTemplate(run, "ringtrain "+run+" root CA", now, rootTTL, 1)
	if err != nil {
		return nil, err
	}
	root, err := sign(rootTmpl, rootTmpl, rootKey.Public(), rootKey)
	if err != nil {
		return nil, err
	}
	key, err := newKey()
	if err != nil {
		return nil, err
	}
	intTmpl, err := caTemplate(run, "ringtrain "+run+" intermediate CA", now, min(intermediateTTL, root.NotAfter.Sub(now)), 0)
	if err != nil {
		return nil, err
	}
	inter, err := sign(intTmpl, root, key.Public(), rootKey)
	if err != nil {
		return nil, err
	}
	return &Authority{Run: run, Root: root, Intermediate: inter, rootKey: rootKey, key: key}, nil
}

// LoadAuthority reads an authority from PEM: the root certificate, the
// intermediate certificate and the intermediate's key (what issuing needs).
// The run is the one the intermediate was made for.
func LoadAuthority(rootPEM, intermediatePEM, intermediateKeyPEM []byte) (*Authority, error) {
	root, err := parseCert(rootPEM)
	if err != nil {
		return nil, fmt.Errorf("pki: root: %w", err)
	}
	inter, err := parseCert(intermediatePEM)
	if err != nil {
		return nil, fmt.Errorf("pki: intermediate: %w", err)
	}
	if err := inter.CheckSignatureFrom(root); err != nil {
		return nil, fmt.Errorf("pki: the intermediate is not signed by the root: %w", err)
	}
	key, err := parseKey(intermediateKeyPEM)
	if err != nil {
		return nil, fmt.Errorf("pki: intermediate key: %w", err)
	}
	if !publicEqual(key.Public(), inter.PublicKey) {
		return nil, errors.New("pki: the intermediate key does not match the intermediate certificate")
	}
	run := ""
	if len(inter.Subject.OrganizationalUnit) == 1 {
		run = inter.Subject.OrganizationalUnit[0]
	}
	return &Authority{Run: run, Root: root, Intermediate: inter, key: key}, nil
}

// IssueOptions shape a leaf.
type IssueOptions struct {
	// Now is the start of validity (zero: time.Now()).
	Now time.Time
	// TTL is the lifetime (zero: DefaultLeafTTL); it never outlasts the
	// intermediate.
	TTL time.Duration
	// DNSNames and IPs are host SANs, for servers that clients check by
	// host name (etcd); ringtrain's own peers check identities instead.
	DNSNames []string
	IPs      []net.IP
}

// KeyPair is a leaf in PEM: the certificate followed by the intermediate
// (the chain a peer needs to reach the root), and the PKCS #8 private key.
type KeyPair struct {
	Cert, Key []byte
}

// Issue signs a new key pair for id, which must be of a's run.
func (a *Authority) Issue(id Identity, opt IssueOptions) (KeyPair, error) {
	key, err := newKey()
	if err != nil {
		return KeyPair{}, err
	}
	cert, err := a.issue(id, key.Public(), opt)
	if err != nil {
		return KeyPair{}, err
	}
	return KeyPair{Cert: cert, Key: mustKeyPEM(key)}, nil
}

// issue signs a leaf for id over pub and returns it with its chain (PEM).
func (a *Authority) issue(id Identity, pub crypto.PublicKey, opt IssueOptions) ([]byte, error) {
	if err := id.Validate(); err != nil {
		return nil, err
	}
	if a.Run != "" && id.Run != a.Run {
		return nil, fmt.Errorf("pki: cannot issue %s of run %q from the CA of run %q", id, id.Run, a.Run)
	}
	now := opt.Now
	if now.IsZero() {
		now = time.Now()
	}
	ttl := opt.TTL
	if ttl <= 0 {
		ttl = DefaultLeafTTL
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	notAfter := now.Add(ttl)
	if notAfter.After(a.Intermediate.NotAfter) {
		notAfter = a.Intermediate.NotAfter
	}
	usage := []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	if id.Role == RoleClient {
		usage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: id.String(), OrganizationalUnit: []string{id.Run}},
		NotBefore:    now.Add(-backdate),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  usage,
		URIs:         []*url.URL{id.URI()},
		DNSNames:     opt.DNSNames,
		IPAddresses:  opt.IPs,
	}
	cert, err := sign(tmpl, a.Intermediate, pub, a.key)
	if err != nil {
		return nil, err
	}
	return append(certPEM(cert), certPEM(a.Intermediate)...), nil
}

// RootPEM is the trust anchor, ca.pem.
func (a *Authority) RootPEM() []byte { return certPEM(a.Root) }

// IntermediatePEM is the intermediate certificate.
func (a *Authority) IntermediatePEM() []byte { return certPEM(a.Intermediate) }

// IntermediateKeyPEM is the intermediate's private key.
func (a *Authority) IntermediateKeyPEM() []byte { return mustKeyPEM(a.key) }

// RootKeyPEM is the root's private key; nil for a loaded authority.
func (a *Authority) RootKeyPEM() []byte {
	if a.rootKey == nil {
		return nil
	}
	return mustKeyPEM(a.rootKey)
}

func caTemplate(run, cn string, now time.Time, ttl time.Duration, maxPath int) (*x509.Certificate, error) {
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	return &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: cn, OrganizationalUnit: []string{run}},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(ttl),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            maxPath,
		MaxPathLenZero:        maxPath == 0,
	}, nil
}
