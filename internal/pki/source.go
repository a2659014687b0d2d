package pki

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"
)

// Files are the PEM files of one identity: its certificate chain, its key,
// and the run's root (the CA bundle it trusts).
type Files struct {
	Cert, Key, CA string
}

// stamp is what tells a rewritten file: its modification time and size.
type stamp struct {
	mod  time.Time
	size int64
}

// Source serves one identity's key pair and trust bundle to TLS configs,
// re-reading the files when one of them changes (modification time or
// size), so that a rotated certificate takes effect at the next handshake.
// A rewrite that does not parse, or whose key does not match its
// certificate (a rotation half done), keeps the previous pair in use until
// the files are whole again. Safe for concurrent use.
type Source struct {
	files Files

	mu     sync.Mutex
	stamps [3]stamp
	cert   *tls.Certificate
	pool   *x509.CertPool
	id     Identity
	// Now is the clock certificates are verified against (default
	// time.Now); tests move it.
	now func() time.Time
}

// NewSource loads files; they must hold a valid key pair with an identity,
// and a CA bundle.
func NewSource(files Files) (*Source, error) {
	s := &Source{files: files, now: time.Now}
	if _, _, err := s.current(); err != nil {
		return nil, err
	}
	return s, nil
}

// Identity is the identity of the current certificate.
func (s *Source) Identity() Identity {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.id
}

// Files returns the paths the source reads.
func (s *Source) Files() Files { return s.files }

// current returns the key pair and pool, reloading them first if a file
// changed since the last load.
func (s *Source) current() (*tls.Certificate, *x509.CertPool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var st [3]stamp
	for i, p := range []string{s.files.Cert, s.files.Key, s.files.CA} {
		fi, err := os.Stat(p)
		if err != nil {
			if s.cert != nil {
				return s.cert, s.pool, nil // mid-rotation: keep the loaded pair
			}
			return nil, nil, fmt.Errorf("pki: %w", err)
		}
		st[i] = stamp{fi.ModTime(), fi.Size()}
	}
	if s.cert != nil && st == s.stamps {
		return s.cert, s.pool, nil
	}
	cert, pool, id, err := load(s.files)
	if err != nil {
		if s.cert != nil {
			return s.cert, s.pool, nil
		}
		return nil, nil, err
	}
	s.cert, s.pool, s.id, s.stamps = cert, pool, id, st
	return cert, pool, nil
}

func load(f Files) (*tls.Certificate, *x509.CertPool, Identity, error) {
	pair, err := tls.LoadX509KeyPair(f.Cert, f.Key)
	if err != nil {
		return nil, nil, Identity{}, fmt.Errorf("pki: key pair %s, %s: %w", f.Cert, f.Key, err)
	}
	id, err := IdentityOf(pair.Leaf)
	if err != nil {
		return nil, nil, Identity{}, fmt.Errorf("pki: %s: %w", f.Cert, err)
	}
	ca, err := os.ReadFile(f.CA)
	if err != nil {
		return nil, nil, Identity{}, fmt.Errorf("pki: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, nil, Identity{}, fmt.Errorf("pki: %s holds no PEM certificate", f.CA)
	}
	return &pair, pool, id, nil
}

// ServerConfig is the TLS config of a server that requires every client to
// present a certificate chaining to the run's root (TLS 1.3 only). Each
// handshake takes the current key pair and bundle.
func (s *Source) ServerConfig() *tls.Config { return s.serverConfig(tls.RequireAndVerifyClientCert) }

// OptionalClientServerConfig is ServerConfig for a server that also admits
// clients without a certificate (workers about to enroll): a certificate a
// client does present must chain to the run's root and name an identity,
// but one without is let in, so every call it serves must authorize the
// caller (PeerIdentity is ErrNoPeerCertificate for it).
func (s *Source) OptionalClientServerConfig() *tls.Config {
	return s.serverConfig(tls.VerifyClientCertIfGiven)
}

func (s *Source) serverConfig(auth tls.ClientAuthType) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			cert, pool, err := s.current()
			if err != nil {
				return nil, err
			}
			return &tls.Config{
				MinVersion:   tls.VersionTLS13,
				Certificates: []tls.Certificate{*cert},
				ClientAuth:   auth,
				ClientCAs:    pool,
				Time:         s.now,
				VerifyPeerCertificate: func(raw [][]byte, chains [][]*x509.Certificate) error {
					if len(raw) == 0 && auth != tls.RequireAndVerifyClientCert {
						return nil // no certificate, and none required
					}
					return checkIdentity(chains)
				},
			}, nil
		},
	}
}

// ClientConfig is the TLS config of a client that presents its certificate
// and accepts a server whose certificate chains to the run's root and names
// an identity (TLS 1.3 only). Host names are not checked: callers that dial
// a particular member check its identity (see ExpectServer).
func (s *Source) ClientConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			cert, _, err := s.current()
			return cert, err
		},
		// Verification is VerifyPeerCertificate's, against the current
		// bundle and without a host name.
		InsecureSkipVerify: true,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			_, pool, err := s.current()
			if err != nil {
				return err
			}
			chains, err := verifyChain(raw, pool, s.now(), x509.ExtKeyUsageServerAuth)
			if err != nil {
				return err
			}
			return checkIdentity(chains)
		},
	}
}

// ExpectServer returns a copy of a client config that also requires the
// server to be want.
func ExpectServer(c *tls.Config, want Identity) *tls.Config {
	c = c.Clone()
	c.VerifyConnection = func(cs tls.ConnectionState) error {
		got, err := ConnIdentity(cs)
		if err != nil {
			return err
		}
		if got.Role != want.Role || got.ID != want.ID {
			return fmt.Errorf("pki: server is %s, want %s", got, want)
		}
		return nil
	}
	return c
}

func verifyChain(raw [][]byte, roots *x509.CertPool, now time.Time, usage x509.ExtKeyUsage) ([][]*x509.Certificate, error) {
	if len(raw) == 0 {
		return nil, ErrNoPeerCertificate
	}
	certs := make([]*x509.Certificate, len(raw))
	for i, b := range raw {
		c, err := x509.ParseCertificate(b)
		if err != nil {
			return nil, fmt.Errorf("pki: peer certificate %d: %w", i, err)
		}
		certs[i] = c
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	chains, err := certs[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{usage}})
	if err != nil {
		return nil, fmt.Errorf("pki: peer %q: %w", certs[0].Subject.CommonName, err)
	}
	return chains, nil
}

// checkIdentity refuses a verified leaf without a ringtrain identity.
func checkIdentity(chains [][]*x509.Certificate) error {
	if len(chains) == 0 || len(chains[0]) == 0 {
		return errors.New("pki: no verified chain")
	}
	_, err := IdentityOf(chains[0][0])
	return err
}
