package enroll

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// fakeClock is a clock the test moves.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time          { return c.t }
func (c *fakeClock) add(d time.Duration)     { c.t = c.t.Add(d) }
func newFakeClock() *fakeClock               { return &fakeClock{t: time.Unix(1_800_000_000, 0)} }
func refused(l *tokenLimiter, a string) bool { return l.wait(a) > 0 }

func TestTokenLimiter(t *testing.T) {
	clk := newFakeClock()
	l := newTokenLimiter(clk.now)
	const a, b = "192.0.2.1", "192.0.2.2"
	for range MaxBadTokens - 1 {
		l.bad(a)
	}
	if refused(l, a) {
		t.Fatalf("refused after %d wrong tokens, want %d allowed", MaxBadTokens-1, MaxBadTokens-1)
	}
	l.bad(a)
	if w := l.wait(a); w != BadTokenWindow {
		t.Fatalf("after %d wrong tokens: wait %v, want %v", MaxBadTokens, w, BadTokenWindow)
	}
	if refused(l, b) {
		t.Fatal("another address is refused too")
	}
	clk.add(BadTokenWindow - time.Second)
	if w := l.wait(a); w != time.Second {
		t.Fatalf("a second before the end: wait %v", w)
	}
	clk.add(time.Second)
	if refused(l, a) {
		t.Fatal("still refused after the window")
	}
	// The count starts again: a fresh window of MaxBadTokens.
	for range MaxBadTokens - 1 {
		l.bad(a)
	}
	if refused(l, a) {
		t.Fatal("refused at once after the window, want a fresh count")
	}

	// Wrong tokens spread wider than the window are not limited.
	for range 3 * MaxBadTokens {
		l.bad(b)
		clk.add(BadTokenWindow / (MaxBadTokens - 1))
		if refused(l, b) {
			t.Fatalf("refused for %d wrong tokens per %v", MaxBadTokens-1, BadTokenWindow)
		}
	}

	// A right token forgets the wrong ones.
	l.good(a)
	for range MaxBadTokens - 1 {
		l.bad(a)
	}
	if refused(l, a) {
		t.Fatal("the wrong tokens before a right one still count")
	}
}

// A flood of wrong tokens from more addresses than the limiter tracks
// keeps its table bounded, and is limited as one peer beyond it; the table
// empties as the windows pass.
func TestTokenLimiterIsBounded(t *testing.T) {
	clk := newFakeClock()
	l := newTokenLimiter(clk.now)
	addr := func(i int) string { return fmt.Sprintf("2001:db8::%x", i) }
	for i := range maxLimitedPeers {
		l.bad(addr(i))
	}
	for i := range MaxBadTokens {
		if refused(l, addr(maxLimitedPeers+i)) {
			t.Fatalf("address %d beyond the table refused after %d wrong tokens beyond it", i, i)
		}
		l.bad(addr(maxLimitedPeers + i))
	}
	if n := len(l.peers); n != maxLimitedPeers+1 {
		t.Fatalf("%d entries, want %d and the shared one", n, maxLimitedPeers)
	}
	if !refused(l, addr(10*maxLimitedPeers)) {
		t.Fatal("a new address beyond the table is not refused after the shared entry's wrong tokens")
	}
	if refused(l, addr(0)) {
		t.Fatal("a tracked address with one wrong token is refused")
	}
	clk.add(BadTokenWindow)
	l.bad(addr(10 * maxLimitedPeers))
	if n := len(l.peers); n != 1 {
		t.Fatalf("%d entries after every window passed, want 1 (the newest)", n)
	}
}

// Over the wire: MaxBadTokens wrong tokens, then even the right token is
// refused with ResourceExhausted (a right guess must not be told apart).
func TestEnrollBadTokensAreLimited(t *testing.T) {
	f := newFixture(t)
	for i := range MaxBadTokens {
		if err := rawEnroll(t, f, "w1", fmt.Sprintf("guess-%d-0123456789abcdef0123456789", i)); status.Code(err) != codes.PermissionDenied {
			t.Fatalf("wrong token %d: %v, want PermissionDenied", i, err)
		}
	}
	err := rawEnroll(t, f, "w1", token)
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "too many wrong bootstrap tokens from 127.0.0.1") {
		t.Fatalf("the right token after %d wrong ones: %v, want ResourceExhausted naming the address", MaxBadTokens, err)
	}
}
