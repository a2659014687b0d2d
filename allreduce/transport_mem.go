package allreduce

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// MemNetwork is an in-memory network of Transports for deterministic tests,
// with fault injection: Kill (a crashed process: its streams reset), Partition
// (messages between two endpoints vanish; handshakes hang), Hang (a stuck
// peer), SetDelay (a slow network), DropNext (lose messages) and OnSend (a
// hook to inject a fault at an exact point of a collective).
type MemNetwork struct {
	mu    sync.Mutex
	eps   map[string]*memTransport
	links map[*memLink]struct{}
	parts map[[2]string]bool // unordered pairs, sorted
	delay time.Duration
	hung  map[string]bool
	drops map[[2]string]int // from → to: data messages left to drop
	hook  func(from, to string, m *Message)
}

// forever stands for "never delivered" in delays.
const forever = time.Duration(1<<63 - 1)

// NewMemNetwork returns an empty network.
func NewMemNetwork() *MemNetwork {
	return &MemNetwork{
		eps:   make(map[string]*memTransport),
		links: make(map[*memLink]struct{}),
		parts: make(map[[2]string]bool),
		hung:  make(map[string]bool),
		drops: make(map[[2]string]int),
	}
}

// Transport returns a new endpoint at addr. It panics if a live endpoint
// already has that address; after Kill or Close the address can be reused
// (a restarted process).
func (n *MemNetwork) Transport(addr string) Transport {
	n.mu.Lock()
	defer n.mu.Unlock()
	if old, ok := n.eps[addr]; ok && !old.isClosed() {
		panic(fmt.Sprintf("allreduce: MemNetwork: address %q is in use", addr))
	}
	t := &memTransport{net: n, addr: addr, reg: newRegistry()}
	n.eps[addr] = t
	return t
}

// Kill crashes the endpoint at addr: its sessions fail with ErrClosed, its
// peers' streams to and from it fail with ErrPeerDead.
func (n *MemNetwork) Kill(addr string) {
	n.mu.Lock()
	t := n.eps[addr]
	n.mu.Unlock()
	if t != nil {
		t.shutdown(fmt.Errorf("%w: connection to %s reset (process killed)", ErrPeerDead, addr))
	}
}

// Partition makes messages between a and b (both ways) vanish; handshakes
// between them hang until their deadline.
func (n *MemNetwork) Partition(a, b string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.parts[pair(a, b)] = true
}

// Hang makes addr a stuck process: nothing it sends is delivered and nothing
// sent to it is accepted, until the senders' deadlines.
func (n *MemNetwork) Hang(addr string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.hung[addr] = true
}

// SetDelay delays every message by d (a slow network; Heal resets it).
func (n *MemNetwork) SetDelay(d time.Duration) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.delay = d
}

// DropNext drops the next count data or abort messages from → to.
func (n *MemNetwork) DropNext(from, to string, count int) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.drops[[2]string{from, to}] += count
}

// OnSend installs fn (nil removes it); it runs before each message is
// routed, outside the network's lock, so it may call Kill and friends.
func (n *MemNetwork) OnSend(fn func(from, to string, m *Message)) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.hook = fn
}

// Heal removes partitions, hangs, delays, drops and the hook. Killed
// endpoints stay dead.
func (n *MemNetwork) Heal() {
	n.mu.Lock()
	defer n.mu.Unlock()
	clear(n.parts)
	clear(n.hung)
	clear(n.drops)
	n.delay = 0
	n.hook = nil
}

func pair(a, b string) [2]string {
	if a > b {
		a, b = b, a
	}
	return [2]string{a, b}
}

// route is the fate of one message from → to.
type route struct {
	dst   *memTransport
	lost  bool // partitioned or dropped: vanishes
	delay time.Duration
	hook  func(from, to string, m *Message)
}

func (n *MemNetwork) route(from, to string, countDrop bool) route {
	n.mu.Lock()
	defer n.mu.Unlock()
	r := route{dst: n.eps[to], hook: n.hook, delay: n.delay}
	if n.hung[from] || n.hung[to] {
		r.delay = forever
	}
	if n.parts[pair(from, to)] {
		r.lost = true
	}
	if k := [2]string{from, to}; countDrop && n.drops[k] > 0 {
		n.drops[k]--
		r.lost = true
	}
	return r
}

// memTransport is one endpoint of a MemNetwork.
type memTransport struct {
	net  *MemNetwork
	addr string
	reg  *registry

	mu     sync.Mutex
	closed bool
}

var _ Transport = (*memTransport)(nil)

func (t *memTransport) Addr() string { return t.addr }

func (t *memTransport) isClosed() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.closed
}

func (t *memTransport) Listen(key SessionKey, h Handler) (func(), error) {
	return t.reg.register(key, h)
}

func (t *memTransport) Connect(ctx context.Context, addr string, hello Hello) (Link, error) {
	if t.isClosed() {
		return nil, ErrClosed
	}
	rt := t.net.route(t.addr, addr, false)
	if rt.dst == nil || rt.dst.isClosed() {
		return nil, fmt.Errorf("%w: connection to %s refused", ErrPeerDead, addr)
	}
	if rt.lost || rt.delay == forever {
		<-ctx.Done() // the handshake is lost
		return nil, context.Cause(ctx)
	}
	if err := sleepCtx(ctx, rt.delay); err != nil {
		return nil, err
	}
	h, err := rt.dst.reg.lookup(ctx, hello)
	if err != nil {
		var ge *GenerationError
		switch {
		case errors.As(err, &ge):
			return nil, ge.flip()
		case errors.Is(err, ErrClosed):
			return nil, fmt.Errorf("%w: %s is closed", ErrPeerDead, addr)
		}
		return nil, err
	}
	if err := h.Accept(hello); err != nil {
		return nil, err
	}
	l := &memLink{net: t.net, src: t, dst: rt.dst, hello: hello, h: h}
	l.ctx, l.cancel = context.WithCancelCause(context.Background())
	t.net.mu.Lock()
	t.net.links[l] = struct{}{}
	t.net.mu.Unlock()
	return l, nil
}

func (t *memTransport) Close() error {
	t.shutdown(fmt.Errorf("%w: %s closed its transport", ErrPeerDead, t.addr))
	return nil
}

// shutdown closes the endpoint; peers see peerErr on their streams.
func (t *memTransport) shutdown(peerErr error) {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return
	}
	t.closed = true
	t.mu.Unlock()
	for _, h := range t.reg.close() {
		h.StreamEnded(fmt.Errorf("%w: transport %s closed", ErrClosed, t.addr))
	}
	t.net.mu.Lock()
	var out, in []*memLink
	for l := range t.net.links {
		switch {
		case l.src == t:
			out = append(out, l)
		case l.dst == t:
			in = append(in, l)
		}
	}
	t.net.mu.Unlock()
	for _, l := range out {
		l.fail(fmt.Errorf("%w: transport %s closed", ErrClosed, t.addr), peerErr)
	}
	for _, l := range in {
		l.fail(peerErr, nil)
	}
}

// memLink is the sending end of one in-memory stream.
type memLink struct {
	net      *MemNetwork
	src, dst *memTransport
	hello    Hello
	h        Handler

	ctx    context.Context // cancelled with the link's failure as cause
	cancel context.CancelCauseFunc
	once   sync.Once
}

var _ Link = (*memLink)(nil)

// fail kills the link: Send returns sendErr from now on; the receiving side
// sees recvErr (if not nil) as the end of the stream.
func (l *memLink) fail(sendErr, recvErr error) {
	l.once.Do(func() {
		l.cancel(sendErr)
		if recvErr != nil {
			l.h.StreamEnded(recvErr)
		}
		l.net.mu.Lock()
		delete(l.net.links, l)
		l.net.mu.Unlock()
	})
}

func (l *memLink) Close() error {
	var recvErr error = fmt.Errorf("%w: rank %d (%s) closed generation %d", ErrPeerDead, l.hello.From, l.src.addr, l.hello.Key.Generation)
	if cur := l.src.reg.current(); cur != l.hello.Key && cur.RunID != "" {
		recvErr = &GenerationError{RunID: l.hello.Key.RunID, Generation: l.hello.Key.Generation,
			PeerRunID: cur.RunID, PeerGeneration: cur.Generation}
	}
	l.fail(fmt.Errorf("%w: stream closed", ErrClosed), recvErr)
	return nil
}

// Flush is immediate: Send copies the payload.
func (l *memLink) Flush(context.Context) error { return nil }

func (l *memLink) Send(ctx context.Context, m *Message) error {
	if l.ctx.Err() != nil {
		return context.Cause(l.ctx)
	}
	rt := l.net.route(l.src.addr, l.dst.addr, true)
	if rt.hook != nil {
		rt.hook(l.src.addr, l.dst.addr, m)
		if l.ctx.Err() != nil {
			return context.Cause(l.ctx)
		}
	}
	if rt.lost {
		return nil
	}
	// Wait on both the caller's deadline and the link's death.
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stop := context.AfterFunc(l.ctx, func() { cancel(context.Cause(l.ctx)) })
	defer stop()
	if err := sleepCtx(ctx, rt.delay); err != nil {
		return err
	}
	out := *m
	out.Payload = getPayload(len(m.Payload))
	copy(out.Payload, m.Payload)
	if err := l.h.Deliver(ctx, out); err != nil {
		out.Free()
		if errors.Is(err, ErrClosed) {
			// The peer closed this generation: say which one it is at now.
			cur := l.dst.reg.current()
			if cur != l.hello.Key && cur.RunID != "" {
				err = &GenerationError{RunID: l.hello.Key.RunID, Generation: l.hello.Key.Generation,
					PeerRunID: cur.RunID, PeerGeneration: cur.Generation}
			} else {
				err = fmt.Errorf("%w: rank %d (%s) closed generation %d", ErrPeerDead, l.hello.To, l.dst.addr, l.hello.Key.Generation)
			}
			l.fail(err, nil)
		}
		return err
	}
	return nil
}

// sleepCtx waits d (forever: until ctx is done).
func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	if d == forever {
		<-ctx.Done()
		return context.Cause(ctx)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}
