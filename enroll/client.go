package enroll

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/ringtrain/ringtrain/cluster"
	"github.com/ringtrain/ringtrain/internal/pki"
	ringtrainpb "github.com/ringtrain/ringtrain/proto"
)

// Locator returns the address and ID of the coordinator to enroll with.
type Locator func(ctx context.Context) (addr, coordinatorID string, err error)

// LeaderLocator finds the leading coordinator's gRPC address in etcd: the
// election names the leader, its registration the address.
func LeaderLocator(c *cluster.Client) Locator {
	return func(ctx context.Context) (string, string, error) {
		id, ok, err := c.Leader(ctx)
		if err != nil {
			return "", "", err
		}
		if !ok {
			return "", "", ErrNoLeader
		}
		cs, err := c.Coordinators(ctx)
		if err != nil {
			return "", "", err
		}
		for _, ci := range cs {
			if ci.ID == id {
				if ci.GRPC == "" {
					return "", "", fmt.Errorf("%w: coordinator %s serves no gRPC (--listen)", ErrNoLeader, id)
				}
				return ci.GRPC, id, nil
			}
		}
		return "", "", fmt.Errorf("%w: leader %s is not registered", ErrNoLeader, id)
	}
}

// ListLocator tries the coordinators at addrs in turn, one a call: a
// standby refuses (Unavailable) and the next try asks the next one. Any
// coordinator of the run's CA is accepted as the server.
func ListLocator(addrs []string) Locator {
	var mu sync.Mutex
	next := 0
	return func(context.Context) (string, string, error) {
		if len(addrs) == 0 {
			return "", "", ErrNoLeader
		}
		mu.Lock()
		defer mu.Unlock()
		a := addrs[next%len(addrs)]
		next++
		return a, "", nil
	}
}

// ClientConfig configures a worker's enrollment.
type ClientConfig struct {
	// Run and ID name the certificate asked for, worker:<ID> of Run.
	Run, ID string
	// CA is the run's root certificate (PEM): the coordinator must chain
	// to it.
	CA []byte
	// Token is the run's bootstrap token.
	Token string
	// Locate finds the coordinator to ask (LeaderLocator).
	Locate Locator
	// Dir receives cert.pem, key.pem (0600) and ca.pem (pki.DirFiles); it
	// should be private to the worker (e.g. a 0700 temporary directory).
	Dir string
	// Timeout bounds one exchange (zero: 10 s).
	Timeout time.Duration
	// Logger; default zap.NewNop().
	Logger *zap.Logger
}

// Client enrolls one worker and keeps its certificate fresh.
type Client struct {
	cfg ClientConfig
	log *zap.Logger
}

// NewClient builds a Client.
func NewClient(cfg ClientConfig) *Client {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	return &Client{cfg: cfg, log: cfg.Logger.Named("enroll")}
}

// Files are where the certificate, key and CA are written.
func (c *Client) Files() pki.Files { return pki.DirFiles(c.cfg.Dir) }

// Enroll gets the first certificate with the token and writes it to
// Files. Refusals that may pass (no leader yet, the ID still registered by
// a previous holder whose lease has not lapsed, a coordinator unreachable)
// are retried until ctx ends; a bad token, ID or request ends it.
func (c *Client) Enroll(ctx context.Context) error {
	if !ValidID(c.cfg.ID) {
		return fmt.Errorf("%w %q: use 1 to 128 letters, digits, '.', '_' or '-', starting with a letter or digit", ErrBadID, c.cfg.ID)
	}
	base, err := pki.TrustConfig(c.cfg.CA)
	if err != nil {
		return err
	}
	bo := cluster.Backoff{Min: 200 * time.Millisecond, Max: 5 * time.Second}
	for {
		err := c.once(ctx, base, c.cfg.Token)
		if err == nil {
			c.log.Info("enrolled", zap.String("cert", c.Files().Cert))
			return nil
		}
		if !retryable(err) {
			return fmt.Errorf("enroll worker %s: %s", c.cfg.ID, Describe(err))
		}
		c.log.Info("enrollment not possible yet; retrying", zap.String("reason", Describe(err)))
		if !bo.Wait(ctx) {
			return fmt.Errorf("enroll worker %s: %w (last: %s)", c.cfg.ID, ctx.Err(), Describe(err))
		}
	}
}

// Renew replaces the certificate with a new one (a new key), asking over
// mutual TLS with the current one, which src serves.
func (c *Client) Renew(ctx context.Context, src *pki.Source) error {
	return c.once(ctx, src.ClientConfig(), "")
}

// KeepRenewed renews the certificate at half its life until ctx ends,
// retrying a failed renewal with backoff; src must read Files.
func (c *Client) KeepRenewed(ctx context.Context, src *pki.Source) {
	bo := cluster.Backoff{Min: time.Second, Max: 30 * time.Second}
	for {
		b, err := os.ReadFile(c.Files().Cert)
		wait := time.Minute
		if err == nil {
			if l, perr := pki.ParseLeaf(b); perr == nil {
				wait = time.Until(RenewAt(l.NotBefore, l.NotAfter))
			}
		}
		t := time.NewTimer(max(wait, 0))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		for {
			err := c.Renew(ctx, src)
			if err == nil {
				bo.Reset()
				c.log.Info("renewed the certificate")
				break
			}
			c.log.Warn("renewing the certificate failed; retrying", zap.String("reason", Describe(err)))
			if !bo.Wait(ctx) {
				return
			}
		}
	}
}

// RenewAt is when a certificate valid from notBefore to notAfter is
// renewed: at half its life.
func RenewAt(notBefore, notAfter time.Time) time.Time {
	return notBefore.Add(notAfter.Sub(notBefore) / 2)
}

// once is one exchange: locate the coordinator, make a key and a request,
// ask, write the files.
func (c *Client) once(ctx context.Context, base *tls.Config, token string) error {
	addr, coord, err := c.cfg.Locate(ctx)
	if err != nil {
		return err
	}
	csr, key, err := pki.NewCSR(pki.Worker(c.cfg.Run, c.cfg.ID))
	if err != nil {
		return err
	}
	var tc *tls.Config
	if coord != "" {
		tc = pki.ExpectServer(base, pki.Coordinator(c.cfg.Run, coord))
	} else {
		tc = expectCoordinator(base, c.cfg.Run)
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(tc)))
	if err != nil {
		return fmt.Errorf("enroll: coordinator %s at %s: %w", coord, addr, err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	resp, err := ringtrainpb.NewEnrollmentClient(conn).Enroll(ctx, &ringtrainpb.EnrollRequest{
		Run: c.cfg.Run, WorkerId: c.cfg.ID, Csr: csr, Token: token})
	if err != nil {
		return err
	}
	leaf, err := pki.ParseLeaf(resp.GetCertificate())
	if err != nil {
		return fmt.Errorf("enroll: coordinator %s answered: %w", coord, err)
	}
	if id, err := pki.IdentityOf(leaf); err != nil || id != pki.Worker(c.cfg.Run, c.cfg.ID) {
		return fmt.Errorf("enroll: coordinator %s issued %v (%v), not worker:%s", coord, id, err, c.cfg.ID)
	}
	f := c.Files()
	if err := os.MkdirAll(c.cfg.Dir, 0o700); err != nil {
		return fmt.Errorf("enroll: %w", err)
	}
	return pki.WriteFiles([]pki.File{{Path: f.CA, Data: c.cfg.CA, Mode: 0o644},
		{Path: f.Key, Data: key, Mode: 0o600}, {Path: f.Cert, Data: resp.GetCertificate(), Mode: 0o644}}, true)
}

// expectCoordinator requires the server to be some coordinator of run.
func expectCoordinator(c *tls.Config, run string) *tls.Config {
	c = c.Clone()
	c.VerifyConnection = func(cs tls.ConnectionState) error {
		id, err := pki.ConnIdentity(cs)
		if err != nil {
			return err
		}
		if id.Role != pki.RoleCoordinator || id.Run != run {
			return fmt.Errorf("enroll: server is %s of run %q, want a coordinator of run %q", id, id.Run, run)
		}
		return nil
	}
	return c
}

// retryable reports a refusal that may pass by waiting.
func retryable(err error) bool {
	if errors.Is(err, context.Canceled) {
		return false
	}
	st, ok := status.FromError(err)
	if !ok {
		return true // no leader yet, etcd or the network: may pass
	}
	switch st.Code() {
	case codes.PermissionDenied, codes.InvalidArgument, codes.Unimplemented, codes.Internal:
		return false
	}
	return true
}
