package allreduce

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/experimental"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	ringtrainpb "github.com/ringtrain/ringtrain/proto"
)

// gRPC tuning for the data path, measured on loopback (see bench.go).
//
// The flow-control windows bound the bytes in flight on a link (in gRPC's
// buffers and the sockets') to a few default parts, so that a part is
// received, reduced and forwarded while it is still in cache: with 8 and
// 16 MiB windows a 64 MiB all-reduce cost each rank about 20% more CPU
// (4 ranks on 2 cores, which are CPU-bound: about 20% less throughput;
// 2 ranks: 15% more CPU). Below one part plus a window update's round trip
// the sender stalls (512 KiB windows halved throughput). A larger part than
// the stream window still goes through: gRPC widens the window for a
// message the application reads, at one round trip per message. A server
// speaking TLS keeps 8 and 16 MiB windows: with the small ones TLS lost
// 5–16% with 2 ranks (3 rounds; unchanged with 4), its CPU going to
// encryption rather than to cache misses.
const (
	grpcStreamWindow = 3 * DefaultChunkBytes // per-stream flow-control window
	grpcConnWindow   = 2 * grpcStreamWindow  // per-connection window
	tlsStreamWindow  = 8 << 20               // the windows of a server speaking TLS
	tlsConnWindow    = 16 << 20
	grpcIOBuffer     = 1 << 20 // socket read/write buffering
	grpcMaxMsg       = MaxChunkBytes + 64<<10
	closeGrace       = 200 * time.Millisecond // Link.Close waits this long for the peer's ack
)

// GRPCServerOptions are the grpc.Server options the collective data path
// wants (flow-control windows of a few parts, large buffers and messages).
// Pass them to grpc.NewServer when you own the server (see NewGRPCEndpoint).
func GRPCServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.InitialWindowSize(grpcStreamWindow),
		grpc.InitialConnWindowSize(grpcConnWindow),
		grpc.ReadBufferSize(grpcIOBuffer),
		grpc.WriteBufferSize(grpcIOBuffer),
		grpc.MaxRecvMsgSize(grpcMaxMsg),
		experimental.BufferPool(dirtyPool{}),
	}
}

func defaultDialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithInitialWindowSize(grpcStreamWindow),
		grpc.WithInitialConnWindowSize(grpcConnWindow),
		grpc.WithReadBufferSize(grpcIOBuffer),
		grpc.WithWriteBufferSize(grpcIOBuffer),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(grpcMaxMsg), grpc.MaxCallSendMsgSize(grpcMaxMsg),
			grpc.CallContentSubtype(codecName)),
		experimental.WithBufferPool(dirtyPool{}),
		// A stream is never replayed: its payloads are sent in place.
		grpc.WithDisableRetry(),
		// Peers restart and come back on the same address: retry quickly.
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 50 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
			MinConnectTimeout: time.Second,
		}),
	}
}

// GRPCOption configures a GRPCTransport.
type GRPCOption func(*grpcOptions)

type grpcOptions struct {
	advertise  string
	logger     *zap.Logger
	services   []func(grpc.ServiceRegistrar)
	serverOpts []grpc.ServerOption
	dialOpts   []grpc.DialOption
	tls        *TLS
}

// TLS secures a GRPCTransport with mutual TLS and names its peers.
type TLS struct {
	// Server is the listener's config; it must require and verify client
	// certificates (e.g. pki.Source.ServerConfig).
	Server *tls.Config
	// Client is the config of connections to peers: the certificate this
	// endpoint presents and how it verifies servers (e.g.
	// pki.Source.ClientConfig). Connect also requires the server's identity
	// to be the Hello's ToID.
	Client *tls.Config
	// Identify returns the identity a verified peer certificate names, as
	// Config.Identities spells it (e.g. pki.IdentityOf(c).String()).
	Identify func(*x509.Certificate) (string, error)
}

// WithAdvertiseAddr sets the address peers use to reach this endpoint, when
// it differs from the listener's (e.g. listening on ":7000").
func WithAdvertiseAddr(addr string) GRPCOption { return func(o *grpcOptions) { o.advertise = addr } }

// WithGRPCLogger sets the transport's logger (default zap.NewNop()).
func WithGRPCLogger(l *zap.Logger) GRPCOption { return func(o *grpcOptions) { o.logger = l } }

// WithServices registers more services on the server NewGRPCTransport
// creates, before it serves (e.g. the worker's control service).
func WithServices(register ...func(grpc.ServiceRegistrar)) GRPCOption {
	return func(o *grpcOptions) { o.services = append(o.services, register...) }
}

// WithServerOptions adds options to the server NewGRPCTransport creates,
// after GRPCServerOptions.
func WithServerOptions(opts ...grpc.ServerOption) GRPCOption {
	return func(o *grpcOptions) { o.serverOpts = append(o.serverOpts, opts...) }
}

// WithDialOptions adds options to the connections to peers.
func WithDialOptions(opts ...grpc.DialOption) GRPCOption {
	return func(o *grpcOptions) { o.dialOpts = append(o.dialOpts, opts...) }
}

// WithTLS makes the transport speak mutual TLS: its server accepts only
// clients whose certificate c.Server verifies, an incoming stream's Hello
// carries the identity its client proved (FromID, checked against
// Config.Identities), and Connect accepts only the server the Hello names
// (ToID). The payloads are then copied into TLS records, not sent in place.
// With NewGRPCEndpoint, give your server ServerCredentials().
func WithTLS(c TLS) GRPCOption { return func(o *grpcOptions) { o.tls = &c } }

// GRPCTransport is the Transport over gRPC: it serves the Collective service
// (ringtrain.v1.Collective) and the standard health service
// (grpc.health.v1.Health), and opens one long-lived bidirectional stream per
// ring generation to the right neighbour.
//
// Two ways to own the server:
//   - NewGRPCTransport(lis, ...) creates, serves and (on Close) stops its own
//     grpc.Server; add your services with WithServices.
//   - NewGRPCEndpoint(addr, ...) leaves the server to you: create it with
//     GRPCServerOptions(), call Register, register your services, Serve; on
//     shutdown Close the transport first, then stop the server.
type GRPCTransport struct {
	ringtrainpb.UnimplementedCollectiveServer

	addr     string
	log      *zap.Logger
	reg      *registry
	health   *health.Server
	dialOpts []grpc.DialOption
	tls      *TLS // nil: plaintext

	srv       *grpc.Server // nil when the caller owns the server
	serveDone chan struct{}

	mu     sync.Mutex
	closed bool
	links  map[*grpcLink]struct{}
	once   sync.Once
}

var _ Transport = (*GRPCTransport)(nil)

// NewGRPCTransport serves the collective and health services (and those of
// WithServices) on lis until Close.
func NewGRPCTransport(lis net.Listener, opts ...GRPCOption) (*GRPCTransport, error) {
	var o grpcOptions
	for _, opt := range opts {
		opt(&o)
	}
	if o.advertise == "" {
		o.advertise = lis.Addr().String()
	}
	t := newGRPCTransport(o)
	sopts := append(GRPCServerOptions(), grpc.WaitForHandlers(true))
	if creds := t.ServerCredentials(); creds != nil {
		// TLS records are encrypted and decrypted apart from the payload's
		// buffers, and its slower round trips want the larger windows.
		sopts = append(sopts, grpc.Creds(creds),
			grpc.InitialWindowSize(tlsStreamWindow), grpc.InitialConnWindowSize(tlsConnWindow))
	}
	t.srv = grpc.NewServer(append(sopts, o.serverOpts...)...)
	t.Register(t.srv)
	for _, register := range o.services {
		register(t.srv)
	}
	t.serveDone = make(chan struct{})
	go func() {
		defer close(t.serveDone)
		if err := t.srv.Serve(lis); err != nil {
			t.log.Warn("grpc server stopped", zap.Error(err))
		}
	}()
	return t, nil
}

// NewGRPCEndpoint returns a transport reachable at addr whose services the
// caller registers (Register) on a grpc.Server it owns.
func NewGRPCEndpoint(addr string, opts ...GRPCOption) *GRPCTransport {
	o := grpcOptions{advertise: addr}
	for _, opt := range opts {
		opt(&o)
	}
	return newGRPCTransport(o)
}

func newGRPCTransport(o grpcOptions) *GRPCTransport {
	if o.logger == nil {
		o.logger = zap.NewNop()
	}
	t := &GRPCTransport{
		addr:     o.advertise,
		log:      o.logger.Named("allreduce.grpc").With(zap.String("addr", o.advertise)),
		reg:      newRegistry(),
		health:   health.NewServer(),
		dialOpts: append(defaultDialOptions(), o.dialOpts...),
		links:    make(map[*grpcLink]struct{}),
		tls:      o.tls,
	}
	t.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	t.health.SetServingStatus(ringtrainpb.Collective_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	return t
}

// ServerCredentials are the server's TLS credentials (WithTLS), or nil for
// plaintext.
func (t *GRPCTransport) ServerCredentials() credentials.TransportCredentials {
	if t.tls == nil {
		return nil
	}
	return credentials.NewTLS(t.tls.Server)
}

// peerIdentity is the identity the client of a stream proved.
func (t *GRPCTransport) peerIdentity(ctx context.Context) (string, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return "", fmt.Errorf("%w: no peer information", ErrUnauthorized)
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.PeerCertificates) == 0 {
		return "", fmt.Errorf("%w: %s presented no certificate", ErrUnauthorized, p.Addr)
	}
	id, err := t.tls.Identify(info.State.PeerCertificates[0])
	if err != nil {
		return "", fmt.Errorf("%w: %s: %v", ErrUnauthorized, p.Addr, err)
	}
	return id, nil
}

// Register registers the Collective service and the health service on s.
func (t *GRPCTransport) Register(s grpc.ServiceRegistrar) {
	ringtrainpb.RegisterCollectiveServer(s, t)
	healthpb.RegisterHealthServer(s, t.health)
}

// Health returns the health server, to set the status of other services.
func (t *GRPCTransport) Health() *health.Server { return t.health }

// Addr returns the address peers use to reach this endpoint.
func (t *GRPCTransport) Addr() string { return t.addr }

// Listen implements Transport.
func (t *GRPCTransport) Listen(key SessionKey, h Handler) (func(), error) {
	return t.reg.register(key, h)
}

// Close ends every stream, marks the health service NOT_SERVING and, if the
// transport owns its server, stops it. Idempotent.
func (t *GRPCTransport) Close() error {
	t.once.Do(func() {
		t.mu.Lock()
		t.closed = true
		links := make([]*grpcLink, 0, len(t.links))
		for l := range t.links {
			links = append(links, l)
		}
		t.mu.Unlock()
		t.health.Shutdown()
		for _, h := range t.reg.close() {
			h.StreamEnded(fmt.Errorf("%w: transport %s closed", ErrClosed, t.addr))
		}
		for _, l := range links {
			l.Close()
		}
		if t.srv != nil {
			t.srv.Stop()
			<-t.serveDone
		}
	})
	return nil
}

func (t *GRPCTransport) isClosed() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.closed
}

// Stream serves one incoming stream (the left neighbour's link).
func (t *GRPCTransport) Stream(ss grpc.BidiStreamingServer[ringtrainpb.Chunk, ringtrainpb.Chunk]) error {
	if t.isClosed() {
		return status.Error(codes.Unavailable, "allreduce: transport closed")
	}
	ctx := ss.Context()
	var inc inChunk
	in := &inc.Chunk
	if err := ss.RecvMsg(&inc); err != nil {
		return err
	}
	if in.Kind != ringtrainpb.Kind_KIND_HELLO {
		return status.Errorf(codes.InvalidArgument, "allreduce: first message is %v, want KIND_HELLO", in.Kind)
	}
	hello := Hello{Key: SessionKey{RunID: in.RunId, Generation: in.Generation}, From: int(in.FromRank), To: int(in.ToRank)}
	var err error
	if t.tls != nil {
		hello.FromID, err = t.peerIdentity(ctx)
	}
	var h Handler
	if err == nil {
		h, err = t.reg.lookup(ctx, hello)
	}
	if err == nil {
		err = h.Accept(hello)
	}
	if err != nil {
		cur := t.reg.current()
		rej := &ringtrainpb.Chunk{Kind: ringtrainpb.Kind_KIND_ABORT, RunId: cur.RunID, Generation: cur.Generation, Reason: err.Error()}
		var ge *GenerationError
		if errors.As(err, &ge) {
			rej.RunId, rej.Generation = ge.RunID, ge.Generation
		}
		t.log.Info("rejected stream", zap.String("run", hello.Key.RunID), zap.Uint64("generation", hello.Key.Generation),
			zap.Int("from", hello.From), zap.String("peer", hello.FromID), zap.Error(err))
		_ = ss.Send(rej)
		return nil
	}
	ack := &ringtrainpb.Chunk{Kind: ringtrainpb.Kind_KIND_HELLO, RunId: in.RunId, Generation: in.Generation,
		FromRank: in.ToRank, ToRank: in.FromRank}
	if err := ss.Send(ack); err != nil {
		h.StreamEnded(fmt.Errorf("%w: handshake with rank %d: %v", ErrPeerDead, hello.From, err))
		return err
	}

	// When our session closes, tell the client (with our newest generation)
	// so that it stops and can name both generations.
	var byeMu sync.Mutex
	byeSent := false
	bye := func() {
		byeMu.Lock()
		defer byeMu.Unlock()
		if byeSent {
			return
		}
		byeSent = true
		cur := t.reg.current()
		_ = ss.Send(&ringtrainpb.Chunk{Kind: ringtrainpb.Kind_KIND_ABORT, RunId: cur.RunID, Generation: cur.Generation,
			Reason: fmt.Sprintf("rank %d closed generation %d", hello.To, hello.Key.Generation)})
	}
	handlerDone, byeDone := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(byeDone)
		select {
		case <-h.Done():
			bye()
		case <-handlerDone:
		}
	}()
	defer func() {
		close(handlerDone)
		<-byeDone
	}()

	for {
		if err := ss.RecvMsg(&inc); err != nil {
			h.StreamEnded(fmt.Errorf("%w: stream from rank %d ended: %v", ErrPeerDead, hello.From, err))
			return nil
		}
		var kind Kind
		switch in.Kind {
		case ringtrainpb.Kind_KIND_DATA:
			kind = KindData
		case ringtrainpb.Kind_KIND_ABORT:
			kind = KindAbort
		case ringtrainpb.Kind_KIND_HEARTBEAT:
			kind = KindHeartbeat
		case ringtrainpb.Kind_KIND_CLOSE:
			h.StreamEnded(closedErr(hello.Key, SessionKey{RunID: in.RunId, Generation: in.Generation}, hello.From))
			return nil
		default:
			h.StreamEnded(fmt.Errorf("%w: rank %d sent a chunk of kind %v", ErrProtocol, hello.From, in.Kind))
			return status.Errorf(codes.InvalidArgument, "allreduce: unexpected chunk kind %v", in.Kind)
		}
		m := Message{Kind: kind, Seq: in.Seq, Chunk: in.Chunk, From: int(in.FromRank),
			Suspect: int(in.SuspectRank), Reason: in.Reason}
		inc.take(&m)
		if in.RunId != hello.Key.RunID || in.Generation != hello.Key.Generation {
			ge := &GenerationError{RunID: hello.Key.RunID, Generation: hello.Key.Generation, PeerRunID: in.RunId, PeerGeneration: in.Generation}
			m.Free()
			h.StreamEnded(fmt.Errorf("%w: message on a generation %d stream: %w", ErrProtocol, hello.Key.Generation, ge))
			return status.Error(codes.FailedPrecondition, ge.Error())
		}
		if err := h.Deliver(ctx, m); err != nil {
			m.Free()
			bye()
			return nil
		}
	}
}

// closedErr is what a receiver at ours learns when the sender closed its
// stream while at theirs (its newest generation).
func closedErr(ours, theirs SessionKey, from int) error {
	if theirs != ours && theirs.RunID != "" {
		return &GenerationError{RunID: ours.RunID, Generation: ours.Generation, PeerRunID: theirs.RunID, PeerGeneration: theirs.Generation}
	}
	return fmt.Errorf("%w: rank %d closed generation %d", ErrPeerDead, from, ours.Generation)
}

// Connect implements Transport.
func (t *GRPCTransport) Connect(ctx context.Context, addr string, hello Hello) (Link, error) {
	if t.isClosed() {
		return nil, ErrClosed
	}
	// The channel writes unbuffered into a gatherConn, which sends pinned
	// payloads in place (see gatherConn).
	// Under TLS the payloads are encrypted into records anyway: the
	// channel keeps its write buffer and the connection is only tracked
	// (so that Close can end it).
	gathers := new(gatherSet)
	wrap := gathers.wrap
	opts := append([]grpc.DialOption(nil), t.dialOpts...)
	sctx, cancel := context.WithCancel(context.Background())
	hs := &handshakes{cancel: cancel}
	if t.tls != nil {
		wrap = gathers.track
		opts = append(opts, grpc.WithTransportCredentials(&watchedCreds{credentials.NewTLS(t.clientTLS(hello.ToID)), hs}))
	} else {
		opts = append(opts, grpc.WithWriteBufferSize(0))
	}
	opts = append(opts, grpc.WithContextDialer(func(ctx context.Context, a string) (net.Conn, error) {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", a)
		if err != nil {
			return nil, err
		}
		return wrap(c), nil
	}))
	conn, err := grpc.NewClient(addr, opts...)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("allreduce: dial %s: %w", addr, err)
	}
	stop := context.AfterFunc(ctx, cancel)
	fail := func(err error) (Link, error) {
		stop()
		cancel()
		conn.Close()
		herr, refused := hs.last()
		switch {
		case refused:
			return nil, fmt.Errorf("%w: TLS handshake with %s: %v", ErrUnauthorized, addr, herr)
		case ctx.Err() != nil && herr != nil:
			return nil, fmt.Errorf("%w (last TLS handshake with %s: %v)", context.Cause(ctx), addr, herr)
		case ctx.Err() != nil:
			return nil, context.Cause(ctx)
		}
		return nil, err
	}
	stream, err := ringtrainpb.NewCollectiveClient(conn).Stream(sctx, grpc.WaitForReady(true))
	if err != nil {
		return fail(fmt.Errorf("%w: open stream to %s: %v", ErrPeerDead, addr, err))
	}
	if err := stream.Send(&ringtrainpb.Chunk{Kind: ringtrainpb.Kind_KIND_HELLO, RunId: hello.Key.RunID,
		Generation: hello.Key.Generation, FromRank: uint32(hello.From), ToRank: uint32(hello.To)}); err != nil {
		return fail(fmt.Errorf("%w: hello to %s: %v", ErrPeerDead, addr, err))
	}
	reply := new(ringtrainpb.Chunk)
	if err := stream.RecvMsg(reply); err != nil {
		return fail(fmt.Errorf("%w: hello to %s: %v", ErrPeerDead, addr, err))
	}
	if !stop() {
		return fail(context.Cause(ctx))
	}
	peer := SessionKey{RunID: reply.RunId, Generation: reply.Generation}
	switch {
	case reply.Kind == ringtrainpb.Kind_KIND_HELLO && peer == hello.Key:
	case peer != hello.Key && peer.RunID != "":
		return fail(&GenerationError{RunID: hello.Key.RunID, Generation: hello.Key.Generation, PeerRunID: peer.RunID, PeerGeneration: peer.Generation})
	default:
		return fail(fmt.Errorf("allreduce: %s rejected the stream: %s", addr, reply.Reason))
	}
	l := &grpcLink{t: t, addr: addr, hello: hello, conn: conn, stream: stream, cancel: cancel, done: make(chan struct{})}
	l.inflight = make(chan struct{}, maxInflight)
	l.gathers = gathers
	l.out.release = releasePool{inflight: l.inflight, unpin: gathers.unpin}
	l.out.hdr.RunId, l.out.hdr.Generation, l.out.hdr.ToRank = hello.Key.RunID, hello.Key.Generation, uint32(hello.To)
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		cancel()
		conn.Close()
		return nil, ErrClosed
	}
	t.links[l] = struct{}{}
	t.mu.Unlock()
	go l.recvLoop()
	return l, nil
}

// clientTLS is the client config of a stream to the member want ("" takes
// any server the config verifies).
func (t *GRPCTransport) clientTLS(want string) *tls.Config {
	c := t.tls.Client.Clone()
	if want == "" {
		return c
	}
	next := c.VerifyConnection
	c.VerifyConnection = func(cs tls.ConnectionState) error {
		if next != nil {
			if err := next(cs); err != nil {
				return err
			}
		}
		if len(cs.PeerCertificates) == 0 {
			return serverRefused("server presented no certificate")
		}
		got, err := t.tls.Identify(cs.PeerCertificates[0])
		if err != nil {
			return serverRefused(fmt.Sprintf("server: %v", err))
		}
		if got != want {
			return serverRefused(fmt.Sprintf("server is %q, want %q", got, want))
		}
		return nil
	}
	return c
}

// serverRefused is Connect's refusal of a server's identity; it matches
// ErrUnauthorized.
type serverRefused string

func (e serverRefused) Error() string        { return string(e) }
func (e serverRefused) Is(target error) bool { return target == ErrUnauthorized }

// handshakes records a link's failed TLS handshakes. A refusal (the server
// is not the member we dial, or its certificate does not verify) ends the
// connection attempt at once: retrying cannot change the certificate. Other
// failures (a reset mid-handshake) are retried within Connect's context and
// named if it runs out.
type handshakes struct {
	cancel context.CancelFunc

	mu      sync.Mutex
	err     error
	refused bool
}

func (h *handshakes) failed(err error) {
	var unknown x509.UnknownAuthorityError
	var invalid x509.CertificateInvalidError
	var verify *tls.CertificateVerificationError
	refused := errors.Is(err, ErrUnauthorized) || errors.As(err, &unknown) || errors.As(err, &invalid) || errors.As(err, &verify)
	h.mu.Lock()
	h.err, h.refused = err, h.refused || refused
	h.mu.Unlock()
	if refused {
		h.cancel()
	}
}

func (h *handshakes) last() (error, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.err, h.refused
}

// watchedCreds reports the client handshakes' failures to a handshakes.
type watchedCreds struct {
	credentials.TransportCredentials
	hs *handshakes
}

func (w *watchedCreds) ClientHandshake(ctx context.Context, authority string, c net.Conn) (net.Conn, credentials.AuthInfo, error) {
	conn, info, err := w.TransportCredentials.ClientHandshake(ctx, authority, c)
	if err != nil {
		w.hs.failed(err)
	}
	return conn, info, err
}

func (w *watchedCreds) Clone() credentials.TransportCredentials {
	return &watchedCreds{w.TransportCredentials.Clone(), w.hs}
}

// grpcLink is the client end of one Collective.Stream.
type grpcLink struct {
	t      *GRPCTransport
	addr   string
	hello  Hello
	conn   *grpc.ClientConn
	stream grpc.BidiStreamingClient[ringtrainpb.Chunk, ringtrainpb.Chunk]
	cancel context.CancelFunc
	done   chan struct{} // closed when recvLoop returns

	sendMu   sync.Mutex
	out      outChunk      // reused by Send, under sendMu
	inflight chan struct{} // one token per zero-copy payload gRPC still holds
	gathers  *gatherSet    // the channel's connections, which pin payloads

	errMu sync.Mutex
	err   error // first failure; every later Send returns it

	closeOnce sync.Once
}

var _ Link = (*grpcLink)(nil)

func (l *grpcLink) fail(err error) {
	l.errMu.Lock()
	if l.err == nil {
		l.err = err
	}
	l.errMu.Unlock()
	l.cancel()
}

func (l *grpcLink) failure() error {
	l.errMu.Lock()
	defer l.errMu.Unlock()
	return l.err
}

// recvLoop watches the server's side of the stream: its only messages are
// the rejection sent when the peer closes our generation.
func (l *grpcLink) recvLoop() {
	defer close(l.done)
	in := new(ringtrainpb.Chunk)
	for {
		if err := l.stream.RecvMsg(in); err != nil {
			l.fail(fmt.Errorf("%w: stream to rank %d (%s) ended: %v", ErrPeerDead, l.hello.To, l.addr, err))
			return
		}
		if in.Kind == ringtrainpb.Kind_KIND_ABORT {
			l.fail(closedErr(l.hello.Key, SessionKey{RunID: in.RunId, Generation: in.Generation}, l.hello.To))
			return
		}
	}
}

func kindToPB(k Kind) ringtrainpb.Kind {
	switch k {
	case KindData:
		return ringtrainpb.Kind_KIND_DATA
	case KindAbort:
		return ringtrainpb.Kind_KIND_ABORT
	case KindHeartbeat:
		return ringtrainpb.Kind_KIND_HEARTBEAT
	}
	return ringtrainpb.Kind_KIND_UNSPECIFIED
}

func (l *grpcLink) Send(ctx context.Context, m *Message) error {
	l.sendMu.Lock()
	defer l.sendMu.Unlock()
	if err := l.failure(); err != nil {
		return err
	}
	o := &l.out
	c := &o.hdr
	c.Kind, c.Seq, c.Chunk, c.FromRank = kindToPB(m.Kind), m.Seq, m.Chunk, uint32(m.From)
	c.SuspectRank, c.Reason = int32(m.Suspect), m.Reason
	o.payload = m.Payload
	defer func() { o.payload = nil }()
	if o.zeroCopy() {
		// Take an in-flight slot; gRPC gives it back when it has written
		// the payload (releasePool.Put).
		select {
		case l.inflight <- struct{}{}:
		case <-ctx.Done():
			l.fail(context.Cause(ctx))
			return l.failure()
		case <-l.done:
			return l.failure()
		}
		l.gathers.pin(o.payload)
	}
	stop := context.AfterFunc(ctx, func() { l.fail(context.Cause(ctx)) })
	err := l.stream.SendMsg(o)
	// A failing stream may leave the payload pinned (gRPC never frees it):
	// harmless, as nothing more is sent on this link; unpinning here could
	// wait for a write stuck on a dead peer.
	if !stop() {
		return l.failure()
	}
	if err != nil {
		// The stream ended; recvLoop has (or will soon have) the reason.
		<-l.done
		if ferr := l.failure(); ferr != nil {
			return ferr
		}
		return fmt.Errorf("%w: send to rank %d (%s): %v", ErrPeerDead, l.hello.To, l.addr, err)
	}
	return nil
}

// Flush waits until gRPC has written every payload sent so far. If the
// stream dies first, gRPC frees the queued payloads when it cleans the stream
// up: wait a little for that, then give up (nothing writes them any more).
func (l *grpcLink) Flush(ctx context.Context) error {
	var grace <-chan time.Time
	timedOut := false
	for taken := 0; taken < maxInflight; {
		select {
		case l.inflight <- struct{}{}:
			taken++
			continue
		default:
		}
		select {
		case l.inflight <- struct{}{}:
			taken++
		case <-ctx.Done():
			l.fail(context.Cause(ctx))
			timedOut = true
			ctx = context.Background() // the stream is dead: wait for its cleanup
		case <-l.done:
			if grace == nil {
				t := time.NewTimer(closeGrace)
				defer t.Stop()
				grace = t.C
			}
		case <-grace:
			return l.failure()
		}
	}
	for range maxInflight {
		<-l.inflight
	}
	if timedOut {
		return l.failure()
	}
	// Every payload was written. A peer that ended the stream after
	// receiving them (it finished the collective and closed its ring first)
	// is no failure of this collective; the next Send reports it.
	return nil
}

// releasePool is the mem.BufferPool of zero-copy payloads: gRPC "returns"
// the caller's memory to it once written, which unpins it (writing out what
// the connection still holds of it) and frees an in-flight slot.
type releasePool struct {
	inflight chan struct{}
	unpin    func([]byte)
}

func (p releasePool) Get(n int) *[]byte {
	b := make([]byte, n)
	return &b
}

func (p releasePool) Put(b *[]byte) {
	if p.unpin != nil {
		p.unpin(*b)
	}
	select {
	case <-p.inflight:
	default:
	}
}

// dirtyPool serves gRPC's receive buffers from our payload pools without
// zeroing them (gRPC's default pool clears every buffer it hands out; ours
// are always fully overwritten by the frame read into them).
type dirtyPool struct{}

func (dirtyPool) Get(n int) *[]byte {
	b := getPayload(n)
	return &b
}

func (dirtyPool) Put(b *[]byte) { putPayload(*b) }

// Close says goodbye (a CLOSE chunk naming our newest generation) when the
// stream is healthy and idle, then ends it. Idempotent.
func (l *grpcLink) Close() error {
	l.closeOnce.Do(func() {
		clean := false // the peer saw our goodbye and ended the stream
		if l.sendMu.TryLock() {
			if l.failure() == nil {
				cur := l.t.reg.current()
				c := &l.out.hdr
				c.Kind, c.Reason, c.SuspectRank = ringtrainpb.Kind_KIND_CLOSE, "", 0
				c.RunId, c.Generation = cur.RunID, cur.Generation
				l.out.payload = nil
				timer := time.AfterFunc(closeGrace, func() { l.fail(fmt.Errorf("%w: stream closed", ErrClosed)) })
				if l.stream.SendMsg(&l.out) == nil {
					_ = l.stream.CloseSend()
					select {
					case <-l.done:
						clean = true
					case <-time.After(closeGrace):
					}
				}
				clean = timer.Stop() && clean
			}
			l.sendMu.Unlock()
		}
		l.fail(fmt.Errorf("%w: stream closed", ErrClosed))
		<-l.done
		if !clean {
			// gRPC's writer may be stuck on a peer that stopped reading, and
			// the channel's Close would wait 5 s for it to say goodbye:
			// close the socket first.
			l.gathers.close()
		}
		l.conn.Close()
		l.t.mu.Lock()
		delete(l.t.links, l)
		l.t.mu.Unlock()
	})
	return nil
}
