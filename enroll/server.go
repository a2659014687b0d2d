package enroll

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"regexp"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ringtrain/ringtrain/internal/pki"
	ringtrainpb "github.com/ringtrain/ringtrain/proto"
)

// DefaultTTL is the lifetime of an enrolled worker's certificate; the
// worker renews it at half-life.
const DefaultTTL = time.Hour

// validID is a worker ID that may name a certificate, an etcd key and a
// gossip member: a hostname-like word.
var validID = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// ValidID reports whether id may be a worker's ID.
func ValidID(id string) bool { return validID.MatchString(id) }

// ServerConfig configures a Server.
type ServerConfig struct {
	// Authority issues the leaves: the run's intermediate (no root key).
	Authority *pki.Authority
	// Run is the run served; requests for another are refused.
	Run string
	// Token is the bootstrap token of first enrollments; empty: only
	// renewals are served.
	Token string
	// TTL is the issued leaves' lifetime (zero: DefaultTTL).
	TTL time.Duration
	// Leading reports whether this coordinator leads now.
	Leading func() bool
	// Live reports whether a live worker is registered as id.
	Live func(ctx context.Context, id string) (bool, error)
	// Provision, if not nil, lets worker id into etcd (its user and role:
	// cluster.EnsureWorkerUser) before its certificate is returned, so
	// that the certificate works there at once. Renewals provision again
	// (idempotently): an etcd restored without the user lets it back in.
	Provision func(ctx context.Context, id string) error
	// Logger; default zap.NewNop().
	Logger *zap.Logger
}

// Server serves ringtrainpb.Enrollment. Its gRPC server must use a TLS
// config that admits clients without a certificate and verifies those
// presented (pki.Source.OptionalClientServerConfig).
type Server struct {
	ringtrainpb.UnimplementedEnrollmentServer
	cfg   ServerConfig
	log   *zap.Logger
	limit *tokenLimiter // wrong bootstrap tokens per peer address
}

var _ ringtrainpb.EnrollmentServer = (*Server)(nil)

// NewServer builds a Server.
func NewServer(cfg ServerConfig) *Server {
	if cfg.TTL <= 0 {
		cfg.TTL = DefaultTTL
	}
	log := cfg.Logger
	if log == nil {
		log = zap.NewNop()
	}
	return &Server{cfg: cfg, log: log, limit: newTokenLimiter(time.Now)}
}

// Enroll issues a certificate, or refuses with the status codes of the
// contract: PermissionDenied (token, identity, run), InvalidArgument (ID,
// request), AlreadyExists (a live worker holds the ID), ResourceExhausted
// (too many wrong tokens from the caller's address), Unavailable (not
// the leader, etcd unreachable, the worker's etcd user not provisioned).
func (s *Server) Enroll(ctx context.Context, req *ringtrainpb.EnrollRequest) (*ringtrainpb.EnrollResponse, error) {
	id := req.GetWorkerId()
	log := s.log.With(zap.String("worker", id))
	if !s.cfg.Leading() {
		return nil, status.Errorf(codes.Unavailable, "%v: enroll with the leader (etcd names it)", ErrNotLeader)
	}
	if req.GetRun() != s.cfg.Run {
		return nil, status.Errorf(codes.PermissionDenied, "enroll: this coordinator serves run %q, not %q", s.cfg.Run, req.GetRun())
	}
	if !ValidID(id) {
		return nil, status.Errorf(codes.InvalidArgument, "%v %q: use 1 to 128 letters, digits, '.', '_' or '-', starting with a letter or digit", ErrBadID, id)
	}
	peer, perr := pki.PeerIdentity(ctx)
	renewal := req.GetToken() == ""
	if renewal {
		// Authenticated by the certificate the caller holds.
		if perr != nil {
			return nil, status.Errorf(codes.PermissionDenied, "enroll: no token and no certificate: a first enrollment needs the run's bootstrap token (%v)", perr)
		}
		if peer.Role != pki.RoleWorker || peer.ID != id || peer.Run != s.cfg.Run {
			return nil, status.Errorf(codes.PermissionDenied, "enroll: %s of run %q cannot renew worker:%s", peer, peer.Run, id)
		}
	} else {
		addr := peerHost(ctx)
		if wait := s.limit.wait(addr); wait > 0 {
			return nil, status.Errorf(codes.ResourceExhausted, "%v from %s; retry in %v", ErrTooManyBadTokens, addr, wait.Round(time.Second))
		}
		if s.cfg.Token == "" || subtle.ConstantTimeCompare([]byte(req.GetToken()), []byte(s.cfg.Token)) != 1 {
			s.limit.bad(addr)
			log.Warn("enrollment refused: bad bootstrap token", zap.String("from", addr))
			return nil, status.Errorf(codes.PermissionDenied, "%v: give the run's token (--enroll-token-file)", ErrBadToken)
		}
		s.limit.good(addr)
		live, err := s.cfg.Live(ctx, id)
		if err != nil {
			return nil, status.Errorf(codes.Unavailable, "enroll: cannot tell whether worker %q is live: %v", id, err)
		}
		if live {
			log.Warn("enrollment refused: a live worker holds the ID")
			return nil, status.Errorf(codes.AlreadyExists, "%v %q; choose another --id, or retry once it has left (its registration lapses within the lease TTL)", ErrLive, id)
		}
	}
	if s.cfg.Provision != nil {
		if err := s.cfg.Provision(ctx, id); err != nil {
			log.Warn("enrollment refused: cannot give the worker its etcd user", zap.Error(err))
			return nil, status.Errorf(codes.Unavailable, "enroll: cannot give worker %q its etcd user: %v; retry", id, err)
		}
	}
	chain, err := s.cfg.Authority.IssueCSR(pki.Worker(s.cfg.Run, id), req.GetCsr(), pki.IssueOptions{TTL: s.cfg.TTL})
	if err != nil {
		if errors.Is(err, pki.ErrBadCSR) {
			return nil, status.Error(codes.InvalidArgument, err.Error())
		}
		return nil, status.Errorf(codes.Internal, "enroll: issue: %v", err)
	}
	log.Info("issued a worker certificate", zap.Bool("renewal", renewal), zap.Duration("ttl", s.cfg.TTL))
	return &ringtrainpb.EnrollResponse{Certificate: chain, Ca: s.cfg.Authority.RootPEM()}, nil
}

// Describe names a refusal for a log or an exit line.
func Describe(err error) string {
	if st, ok := status.FromError(err); ok {
		return fmt.Sprintf("%s (%s)", st.Message(), st.Code())
	}
	return err.Error()
}
