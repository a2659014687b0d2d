package allreduce

import (
	"net"
	"slices"
	"sync"
	"time"
	"unsafe"
)

// gatherConn is the client connection of a link's gRPC channel. gRPC writes
// to it unbuffered (WithWriteBufferSize(0)): each HTTP/2 DATA frame arrives
// as a 9-byte header write followed by its payload pieces, every other frame
// as one write. Instead of copying every byte into gRPC's write buffer,
// gatherConn gathers the frames and sends them with one writev: small pieces
// (headers, the protobuf prefix of a chunk) are copied, large pieces that lie
// in a pinned payload (the sender's own []float32, see grpcLink.Send) are
// referenced where they are. That removes gRPC's copy of every payload byte
// into its write buffer, about 10% of the CPU time of a ring on 2 cores; in
// paired runs there the all-reduce moved 7–16% more bytes per second with 2
// ranks and about 20% more with 4.
//
// The byte stream is never reordered, only delayed, and never for long:
//   - any write that is not part of a DATA frame flushes what is held first;
//   - a frame that references nothing is flushed when complete;
//   - held bytes are flushed once gatherFlushAt are held at a frame's end;
//   - a pinned payload is flushed before it is unpinned (handed back to its
//     owner), so a reference never outlives the memory's loan;
//   - a watchdog flushes anything held for gatherIdle (gRPC stopped writing
//     mid-message, e.g. waiting for flow-control credit).
type gatherConn struct {
	net.Conn

	mu        sync.Mutex
	iov       net.Buffers
	arena     []byte // copies of small pieces, valid until the next flush
	held      int    // bytes in iov
	refs      int    // pieces in iov referenced in place
	remaining int    // payload bytes still to come in the current DATA frame
	err       error  // sticky write error
	watchdog  *time.Timer
	armed     bool
	closed    bool

	// pins are the payloads Write may reference in place. They have their
	// own lock, taken after mu, so that pinning (by the sender) never waits
	// for a write stuck on a dead peer. A pin keeps its memory alive.
	pinMu sync.Mutex
	pins  [][]byte
}

const (
	gatherCopyMax  = 4 << 10              // pieces up to this size are copied
	gatherFlushAt  = 1 << 20              // flush at a frame end past this
	gatherIdle     = 1 * time.Millisecond // the longest anything stays held
	frameHeaderLen = 9
	frameTypeData  = 0x0
)

func newGatherConn(c net.Conn) *gatherConn {
	g := &gatherConn{Conn: c, arena: make([]byte, 0, 64<<10)}
	g.watchdog = time.AfterFunc(time.Hour, g.idleFlush)
	g.watchdog.Stop()
	return g
}

// Write implements net.Conn for gRPC's writer (one goroutine).
func (g *gatherConn) Write(p []byte) (int, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.err != nil {
		return 0, g.err
	}
	if g.remaining == 0 {
		if len(p) == frameHeaderLen && p[3] == frameTypeData {
			if n := int(p[0])<<16 | int(p[1])<<8 | int(p[2]); n > 0 {
				g.hold(p, true)
				g.remaining = n
				g.arm()
				return len(p), nil
			}
		}
		// Any other frame: in order, after what is held.
		if err := g.flushLocked(); err != nil {
			return 0, err
		}
		n, err := g.Conn.Write(p)
		if err != nil {
			g.err = err
		}
		return n, err
	}
	g.hold(p, len(p) <= gatherCopyMax || !g.isPinned(p))
	g.remaining = max(g.remaining-len(p), 0)
	if g.remaining == 0 && (g.held >= gatherFlushAt || g.refs == 0) {
		if err := g.flushLocked(); err != nil {
			return 0, err
		}
	}
	g.arm()
	return len(p), nil
}

func (g *gatherConn) hold(p []byte, copyIt bool) {
	if copyIt {
		if cap(g.arena)-len(g.arena) < len(p) {
			// The old arena stays referenced by iov until the flush.
			g.arena = make([]byte, 0, max(64<<10, len(p)))
		}
		s := len(g.arena)
		g.arena = append(g.arena, p...)
		p = g.arena[s:len(g.arena):len(g.arena)]
	} else {
		g.refs++
	}
	g.iov = append(g.iov, p)
	g.held += len(p)
}

func addrRange(b []byte) (lo, hi uintptr) {
	lo = uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	return lo, lo + uintptr(len(b))
}

func (g *gatherConn) isPinned(p []byte) bool {
	lo, hi := addrRange(p)
	g.pinMu.Lock()
	defer g.pinMu.Unlock()
	for _, b := range g.pins {
		if blo, bhi := addrRange(b); lo >= blo && hi <= bhi {
			return true
		}
	}
	return false
}

// arm starts the watchdog if something is held and it is not running.
func (g *gatherConn) arm() {
	if g.held > 0 && !g.armed && !g.closed {
		g.armed = true
		g.watchdog.Reset(gatherIdle)
	}
}

func (g *gatherConn) idleFlush() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.armed = false
	g.flushLocked()
}

func (g *gatherConn) flushLocked() error {
	if g.held == 0 {
		return g.err
	}
	var err error
	if g.err == nil && !g.closed {
		if raceEnabled {
			var all []byte
			for _, b := range g.iov {
				all = append(all, b...)
			}
			_, err = g.Conn.Write(all)
		} else {
			bufs := g.iov // WriteTo consumes its receiver
			_, err = bufs.WriteTo(g.Conn)
		}
		if err != nil {
			g.err = err
		}
	}
	g.drop()
	return err
}

// drop forgets what is held (after a flush, or when the conn is dead).
func (g *gatherConn) drop() {
	clear(g.iov)
	g.iov = g.iov[:0]
	if cap(g.arena) > 64<<10 {
		g.arena = make([]byte, 0, 64<<10)
	}
	g.arena = g.arena[:0]
	g.held, g.refs = 0, 0
	if g.armed {
		g.armed = false
		g.watchdog.Stop()
	}
}

// pin lets Write reference b in place until unpin(b).
func (g *gatherConn) pin(b []byte) {
	if len(b) == 0 {
		return
	}
	g.pinMu.Lock()
	g.pins = append(g.pins, b)
	g.pinMu.Unlock()
}

// unpin writes out whatever is held (it may reference b), then forgets b.
// It waits for a write in progress: gRPC calls it when it is done with b
// (on its writer goroutine, or when closing the transport, after it has
// bounded the connection's writes with a deadline).
func (g *gatherConn) unpin(b []byte) {
	if len(b) == 0 {
		return
	}
	lo, _ := addrRange(b)
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.refs > 0 {
		g.flushLocked()
	}
	g.pinMu.Lock()
	defer g.pinMu.Unlock()
	for i, p := range g.pins {
		if plo, _ := addrRange(p); plo == lo && len(p) == len(b) {
			g.pins = slices.Delete(g.pins, i, i+1)
			break
		}
	}
}

// Close closes the connection first, so that a write blocked on a dead peer
// returns and releases the lock, then drops what is held.
func (g *gatherConn) Close() error {
	err := g.Conn.Close()
	g.mu.Lock()
	g.closed = true
	g.drop()
	g.mu.Unlock()
	g.pinMu.Lock()
	g.pins = nil
	g.pinMu.Unlock()
	return err
}

// gatherSet is a link's view of its channel's connections: gRPC may dial
// again after a failure, and a payload is unpinned on the connection that
// pinned it.
type gatherSet struct {
	mu     sync.Mutex
	cur    *gatherConn
	raw    net.Conn // a tracked connection (track), not gathered
	pinned []pinnedOn
}

type pinnedOn struct {
	b []byte
	g *gatherConn
}

func (s *gatherSet) wrap(c net.Conn) net.Conn {
	g := newGatherConn(c)
	s.mu.Lock()
	s.cur = g
	s.mu.Unlock()
	return g
}

// track records c without gathering its writes (TLS encrypts above it;
// nothing is pinned), so that close can still end it.
func (s *gatherSet) track(c net.Conn) net.Conn {
	s.mu.Lock()
	s.raw = c
	s.mu.Unlock()
	return c
}

// pin lets the current connection send b in place until unpin(b).
func (s *gatherSet) pin(b []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur == nil || len(b) == 0 {
		return // not yet connected: the bytes are copied
	}
	s.cur.pin(b)
	s.pinned = append(s.pinned, pinnedOn{b, s.cur})
}

func (s *gatherSet) unpin(b []byte) {
	if len(b) == 0 {
		return
	}
	lo, _ := addrRange(b)
	s.mu.Lock()
	var g *gatherConn
	for i, p := range s.pinned {
		if plo, _ := addrRange(p.b); plo == lo && len(p.b) == len(b) {
			g = p.g
			s.pinned = slices.Delete(s.pinned, i, i+1)
			break
		}
	}
	s.mu.Unlock()
	if g != nil {
		g.unpin(b)
	}
}

// close closes the current connection (gRPC then sees it fail).
func (s *gatherSet) close() {
	s.mu.Lock()
	g, raw := s.cur, s.raw
	s.mu.Unlock()
	if g != nil {
		g.Close()
	}
	if raw != nil {
		raw.Close()
	}
}
