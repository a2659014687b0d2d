package coordinator

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/ringtrain/ringtrain/cluster"
	"github.com/ringtrain/ringtrain/enroll"
	"github.com/ringtrain/ringtrain/internal/httpauth"
	"github.com/ringtrain/ringtrain/internal/pki"
	"github.com/ringtrain/ringtrain/internal/usage"
	ringtrainpb "github.com/ringtrain/ringtrain/proto"
)

// secrets are what New loads from the files the config names.
type secrets struct {
	tls    *pki.Source    // nil: the gRPC server in plaintext (Insecure)
	issuer *pki.Authority // nil: no enrollment
	token  string         // the bootstrap token of first enrollments
	// selfDir holds a certificate this coordinator issued itself from
	// issuer (no TLS files given); "" when it was given one.
	selfDir string
}

// loadSecrets loads the coordinator's certificate (which must be
// coordinator cfg.ID's), the issuing CA and the bootstrap token.
func loadSecrets(cfg Config) (secrets, error) {
	var s secrets
	if cfg.TLS != (pki.Files{}) {
		for _, f := range [][2]string{{"--tls-cert", cfg.TLS.Cert}, {"--tls-key", cfg.TLS.Key}, {"--tls-ca", cfg.TLS.CA}} {
			if f[1] == "" {
				return s, usage.Errorf("%s is not set; give it, or --tls-dir DIR/coordinator/%s with all three files", f[0], cfg.ID)
			}
		}
		src, err := pki.NewSource(cfg.TLS)
		if err != nil {
			return s, usage.Errorf("--tls-dir: %v; create the files with `ringtrain certs --out DIR --coordinators %s`", err, cfg.ID)
		}
		if id := src.Identity(); id.Role != pki.RoleCoordinator || id.ID != cfg.ID || id.Run != cfg.Run {
			return s, usage.Errorf("--tls-cert %s is the certificate of %s of run %q, not of coordinator:%s of run %q; give this coordinator's own (--tls-dir DIR/coordinator/%s)",
				cfg.TLS.Cert, id, id.Run, cfg.ID, cfg.Run, cfg.ID)
		}
		s.tls = src
	}
	if cfg.CADir != "" {
		a, err := pki.LoadAuthorityDir(cfg.CADir)
		if err != nil {
			return s, usage.Errorf("--ca-dir %s: %v; it needs %s, %s and %s as `ringtrain certs --out DIR` writes them",
				cfg.CADir, err, pki.RootFile, pki.IntermediateFile, pki.IntermediateKeyFile)
		}
		if a.Run != cfg.Run {
			return s, usage.Errorf("--ca-dir %s is the CA of run %q, not of --run %q", cfg.CADir, a.Run, cfg.Run)
		}
		s.issuer = a
		if s.tls == nil {
			if err := s.issueSelf(cfg); err != nil {
				return s, err
			}
		}
	}
	var err error
	s.token, err = httpauth.TokenOr(cfg.EnrollToken, "--enroll-token-file", cfg.EnrollTokenFile)
	return s, err
}

// issueSelf issues this coordinator's certificate from the intermediate it
// holds anyway (which could issue any identity), into a private temporary
// directory: so coordinators of a Deployment, whose IDs are pod names
// known only at start, need no certificate of their own.
func (s *secrets) issueSelf(cfg Config) error {
	dir, err := os.MkdirTemp("", "ringtrain-coordinator-tls-")
	if err != nil {
		return fmt.Errorf("coordinator: %w", err)
	}
	if err := writeSelf(s.issuer, dir, cfg); err != nil {
		os.RemoveAll(dir)
		return err
	}
	src, err := pki.NewSource(pki.DirFiles(dir))
	if err != nil {
		os.RemoveAll(dir)
		return err
	}
	s.tls, s.selfDir = src, dir
	return nil
}

func writeSelf(a *pki.Authority, dir string, cfg Config) error {
	return writeLeaf(a, dir, pki.Coordinator(cfg.Run, cfg.ID), cfg.EnrollTTL)
}

// writeLeaf issues id's certificate from a into dir (pki.DirFiles' names).
func writeLeaf(a *pki.Authority, dir string, id pki.Identity, ttl time.Duration) error {
	kp, err := a.Issue(id, pki.IssueOptions{TTL: ttl})
	if err != nil {
		return fmt.Errorf("coordinator: issue the certificate of %s: %w", id, err)
	}
	f := pki.DirFiles(dir)
	return pki.WriteFiles([]pki.File{{Path: f.CA, Data: a.RootPEM(), Mode: 0o644},
		{Path: f.Key, Data: kp.Key, Mode: 0o600}, {Path: f.Cert, Data: kp.Cert, Mode: 0o644}}, true)
}

// keepSelfIssued re-issues a self-issued certificate at half-life until
// ctx ends, then removes it.
func (c *Coordinator) keepSelfIssued(ctx context.Context) {
	defer os.RemoveAll(c.sec.selfDir)
	for {
		wait := time.Minute
		if b, err := os.ReadFile(pki.DirFiles(c.sec.selfDir).Cert); err == nil {
			if l, err := pki.ParseLeaf(b); err == nil {
				wait = time.Until(enroll.RenewAt(l.NotBefore, l.NotAfter))
			}
		}
		t := time.NewTimer(max(wait, time.Second))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		if err := writeSelf(c.sec.issuer, c.sec.selfDir, c.cfg); err != nil {
			c.log.Warn("re-issuing its own certificate failed; retrying", zap.Error(err))
		}
	}
}

// serveGRPC starts the gRPC server on ListenGRPC — TLS with this
// coordinator's certificate: worker enrollment (clients without a
// certificate may call Enroll and nothing else) and health — and the
// plaintext health server on HealthAddr, which serves health and nothing
// else, for probes that hold no certificate. stop ends both (bounded).
func (c *Coordinator) serveGRPC(hs *health.Server, client *cluster.Client) (stop func(), err error) {
	var stops []func()
	stop = func() {
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
	}
	if c.sec.selfDir != "" {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); c.keepSelfIssued(ctx) }()
		stops = append(stops, func() { cancel(); <-done })
	}
	start := func(flag, addr string, srv *grpc.Server) (net.Addr, error) {
		lis, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("coordinator: %s %s: %w", flag, addr, err)
		}
		done := make(chan struct{})
		go func() { defer close(done); srv.Serve(lis) }() //nolint:errcheck // returns on Stop
		stops = append(stops, func() { srv.Stop(); <-done })
		return lis.Addr(), nil
	}
	if c.cfg.HealthAddr != "" {
		srv := grpc.NewServer()
		healthpb.RegisterHealthServer(srv, hs)
		a, err := start("--health-addr", c.cfg.HealthAddr, srv)
		if err != nil {
			return stop, err
		}
		c.updateStatus(func(s *Status) { s.HealthAddr = a.String() })
	}
	if c.cfg.ListenGRPC == "" {
		return stop, nil
	}
	var opts []grpc.ServerOption
	if c.sec.tls != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(c.sec.tls.OptionalClientServerConfig())),
			grpc.ChainUnaryInterceptor(requireIdentity), grpc.ChainStreamInterceptor(requireIdentityStream))
	} else {
		c.log.Warn("insecure: the coordinator's gRPC server runs in plaintext and cannot enroll workers (pass --tls-dir)",
			zap.String("listen", c.cfg.ListenGRPC))
	}
	srv := grpc.NewServer(opts...)
	healthpb.RegisterHealthServer(srv, hs)
	if c.sec.issuer != nil && c.sec.tls != nil {
		ringtrainpb.RegisterEnrollmentServer(srv, enroll.NewServer(enroll.ServerConfig{
			Authority: c.sec.issuer, Run: c.cfg.Run, Token: c.sec.token, TTL: c.cfg.EnrollTTL,
			Leading: c.IsLeader,
			Live: func(ctx context.Context, id string) (bool, error) {
				ws, err := client.Workers(ctx)
				return slices.ContainsFunc(ws, func(w cluster.WorkerInfo) bool { return w.ID == id }), err
			},
			Provision: c.provisionWorker(client),
			Logger:    c.log.Named("enroll"),
		}))
		c.log.Info("enrolling workers", zap.Duration("ttl", c.cfg.EnrollTTL), zap.Bool("bootstrap token", c.sec.token != ""))
		if _, err := os.Stat(filepath.Join(c.cfg.CADir, pki.RootKeyFile)); err == nil {
			c.log.Warn("--ca-dir holds the root CA's key, which a coordinator never needs; keep it offline", zap.String("file", pki.RootKeyFile))
		}
	}
	a, err := start("--listen", c.cfg.ListenGRPC, srv)
	if err != nil {
		return stop, err
	}
	adv := cluster.AdvertiseAddr(c.cfg.Advertise, a)
	c.updateStatus(func(s *Status) { s.GRPCAddr, s.GRPCAdvertise = a.String(), adv })
	return stop, nil
}

// requireIdentity lets a caller without a verified certificate call
// Enroll and nothing else.
func requireIdentity(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	if info.FullMethod != ringtrainpb.Enrollment_Enroll_FullMethodName {
		if _, err := pki.PeerIdentity(ctx); err != nil {
			return nil, status.Errorf(codes.Unauthenticated, "%s needs the run's certificate: %v", info.FullMethod, err)
		}
	}
	return h(ctx, req)
}

func requireIdentityStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	if _, err := pki.PeerIdentity(ss.Context()); err != nil {
		return status.Errorf(codes.Unauthenticated, "%s needs the run's certificate: %v", info.FullMethod, err)
	}
	return h(srv, ss)
}
