package allreduce

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/experimental"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	ringtrainpb "github.com/ringtrain/ringtrain/proto"
)

// gRPC tuning for the data path, measured on loopback (see bench.go).
const (
	grpcStreamWindow = 8 << 20  // per-stream flow-control window
	grpcConnWindow   = 16 << 20 // per-connection window
	grpcIOBuffer     = 1 << 20  // socket read/write buffering
	grpcMaxMsg       = MaxChunkBytes + 64<<10
	closeGrace       = 200 * time.Millisecond // Link.Close waits this long for the peer's ack
)

// GRPCServerOptions are the grpc.Server options the collective data path
// wants (large flow-control windows and buffers, large messages). Pass them
// to grpc.NewServer when you own the server (see NewGRPCEndpoint).
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
	t.srv = grpc.NewServer(append(append(GRPCServerOptions(), grpc.WaitForHandlers(true)), o.serverOpts...)...)
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
	}
	t.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	t.health.SetServingStatus(ringtrainpb.Collective_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	return t
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
	h, err := t.reg.lookup(ctx, hello)
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
			zap.Int("from", hello.From), zap.Error(err))
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
	gathers := new(gatherSet)
	opts := append(append([]grpc.DialOption(nil), t.dialOpts...), grpc.WithWriteBufferSize(0),
		grpc.WithContextDialer(func(ctx context.Context, a string) (net.Conn, error) {
			var d net.Dialer
			c, err := d.DialContext(ctx, "tcp", a)
			if err != nil {
				return nil, err
			}
			return gathers.wrap(c), nil
		}))
	conn, err := grpc.NewClient(addr, opts...)
	if err != nil {
		return nil, fmt.Errorf("allreduce: dial %s: %w", addr, err)
	}
	sctx, cancel := context.WithCancel(context.Background())
	stop := context.AfterFunc(ctx, cancel)
	fail := func(err error) (Link, error) {
		stop()
		cancel()
		conn.Close()
		if ctx.Err() != nil {
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
