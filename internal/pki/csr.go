package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"time"
)

// ErrBadCSR: a certificate request that does not parse, is not signed by
// its key, or holds a key other than ECDSA P-256.
var ErrBadCSR = errors.New("pki: bad certificate request")

// NewCSR makes a new key (ECDSA P-256) and a certificate request for id
// signed by it. The request is DER; the key PEM (PKCS #8) stays with the
// caller.
func NewCSR(id Identity) (csrDER, keyPEM []byte, err error) {
	if err := id.Validate(); err != nil {
		return nil, nil, err
	}
	key, err := newKey()
	if err != nil {
		return nil, nil, err
	}
	csrDER, err = x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: id.String(), OrganizationalUnit: []string{id.Run}},
	}, key)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: certificate request: %w", err)
	}
	return csrDER, mustKeyPEM(key), nil
}

// IssueCSR signs a leaf for id over the public key of a certificate
// request (DER) and returns it followed by the intermediate (PEM). What the
// request asks for besides its key (subject, SANs) is ignored: the identity
// is the caller's decision.
func (a *Authority) IssueCSR(id Identity, csrDER []byte, opt IssueOptions) ([]byte, error) {
	csr, err := x509.ParseCertificateRequest(csrDER)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadCSR, err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("%w: not signed by its key: %v", ErrBadCSR, err)
	}
	pub, ok := csr.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		return nil, fmt.Errorf("%w: the key must be ECDSA P-256, not %T", ErrBadCSR, csr.PublicKey)
	}
	return a.issue(id, pub, opt)
}

// ParseLeaf returns the first certificate of a PEM chain.
func ParseLeaf(chainPEM []byte) (*x509.Certificate, error) {
	c, err := parseCert(chainPEM)
	if err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	return c, nil
}

// TrustConfig is the TLS config of a client that has no certificate yet
// (a worker about to enroll): it presents none, and accepts a server whose
// certificate chains to a root of caPEM and names an identity (TLS 1.3
// only). Combine it with ExpectServer to require a particular server.
func TrustConfig(caPEM []byte) (*tls.Config, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("pki: the CA bundle holds no PEM certificate")
	}
	return &tls.Config{
		MinVersion:         tls.VersionTLS13,
		InsecureSkipVerify: true, // verified below, against pool and without a host name
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			chains, err := verifyChain(raw, pool, time.Now(), x509.ExtKeyUsageServerAuth)
			if err != nil {
				return err
			}
			return checkIdentity(chains)
		},
	}, nil
}
