package enroll

import (
	"context"
	"net"
	"sync"
	"time"

	"google.golang.org/grpc/peer"
)

// Wrong bootstrap tokens are limited per peer address, so that the token
// cannot be guessed at network speed: after MaxBadTokens wrong tokens from
// one address within BadTokenWindow, every token enrollment from it (right
// token or not, else the refusal would tell a right guess) is refused for
// BadTokenWindow. Renewals, authenticated by a certificate, are not limited.
const (
	// MaxBadTokens is how many wrong tokens one address may send within
	// BadTokenWindow.
	MaxBadTokens = 5
	// BadTokenWindow is the window the wrong tokens are counted in, and
	// how long an address that sent too many is refused.
	BadTokenWindow = time.Minute
	// maxLimitedPeers bounds the addresses tracked; beyond it, new
	// addresses share one entry (so a flood from many addresses is limited
	// as one peer instead of growing the table).
	maxLimitedPeers = 4096
)

// overflowPeer is the shared entry of addresses beyond maxLimitedPeers.
const overflowPeer = "*"

// tokenLimiter counts wrong tokens per peer address.
type tokenLimiter struct {
	now func() time.Time

	mu    sync.Mutex
	peers map[string]*badTokens
}

type badTokens struct {
	n       int       // wrong tokens since start
	start   time.Time // when this window's first wrong token came
	blocked time.Time // refused until then
}

func newTokenLimiter(now func() time.Time) *tokenLimiter {
	return &tokenLimiter{now: now, peers: map[string]*badTokens{}}
}

// wait is how long addr is still refused (0: not refused).
func (l *tokenLimiter) wait(addr string) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	e, ok := l.peers[addr]
	if !ok {
		if len(l.peers) < maxLimitedPeers {
			return 0
		}
		if e, ok = l.peers[overflowPeer]; !ok {
			return 0
		}
	}
	return max(0, e.blocked.Sub(l.now()))
}

// bad counts a wrong token from addr.
func (l *tokenLimiter) bad(addr string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	e, ok := l.peers[addr]
	if !ok {
		if len(l.peers) >= maxLimitedPeers {
			l.prune(now)
		}
		if len(l.peers) >= maxLimitedPeers {
			addr = overflowPeer
		}
		if e, ok = l.peers[addr]; !ok {
			e = &badTokens{start: now}
			l.peers[addr] = e
		}
	}
	if now.Sub(e.start) >= BadTokenWindow {
		e.n, e.start = 0, now
	}
	e.n++
	if e.n >= MaxBadTokens {
		e.n, e.start, e.blocked = 0, now, now.Add(BadTokenWindow)
	}
}

// good forgets addr's wrong tokens after a right one.
func (l *tokenLimiter) good(addr string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.peers, addr)
}

// prune drops the entries whose window and refusal are over.
func (l *tokenLimiter) prune(now time.Time) {
	for k, e := range l.peers {
		if now.Sub(e.start) >= BadTokenWindow && !e.blocked.After(now) {
			delete(l.peers, k)
		}
	}
}

// peerHost is the address (without the port, which changes with every
// connection) a request came from.
func peerHost(ctx context.Context) string {
	p, ok := peer.FromContext(ctx)
	if !ok || p.Addr == nil {
		return "unknown"
	}
	if h, _, err := net.SplitHostPort(p.Addr.String()); err == nil {
		return h
	}
	return p.Addr.String()
}
