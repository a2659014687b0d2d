package allreduce

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// inbox is the Handler of a Ring: a bounded FIFO of the messages of the one
// stream from the left neighbour. Messages of a later collective wait here
// (neighbours may be a collective ahead); when the FIFO is full the transport
// blocks, which pushes back on the sender through flow control.
type inbox struct {
	key  SessionKey
	left int
	rank int
	ids  []string // the members' identities; nil: no authentication

	ch chan Message // bounded; capacity from inboxSlots

	mu       sync.Mutex
	accepted bool

	endOnce sync.Once
	ended   chan struct{} // closed by StreamEnded; endErr is set before
	endErr  error

	closeOnce sync.Once
	closed    chan struct{}
}

// inboxSlots sizes the FIFO: about 32 MiB of parts, at least 16 messages.
func inboxSlots(chunkBytes int) int {
	return min(4096, max(16, (32<<20)/chunkBytes))
}

func newInbox(sess Session, slots int) *inbox {
	return &inbox{
		key: sess.Key(), rank: sess.Rank(), left: sess.Left(), ids: sess.ids,
		ch:     make(chan Message, slots),
		ended:  make(chan struct{}),
		closed: make(chan struct{}),
	}
}

var _ Handler = (*inbox)(nil)

func (b *inbox) Accept(h Hello) error {
	if h.Key != b.key {
		return fmt.Errorf("%w: hello for run %q generation %d reached run %q generation %d",
			ErrProtocol, h.Key.RunID, h.Key.Generation, b.key.RunID, b.key.Generation)
	}
	// Authorization comes first: a stream that is not from the member it
	// claims to be is refused before it can take the left neighbour's place.
	if err := b.authorize(h); err != nil {
		return err
	}
	if h.From != b.left || h.To != b.rank {
		return fmt.Errorf("%w: stream from rank %d to rank %d, want from rank %d to rank %d",
			ErrProtocol, h.From, h.To, b.left, b.rank)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.accepted {
		return fmt.Errorf("%w: rank %d opened a second stream in generation %d", ErrProtocol, h.From, h.Key.Generation)
	}
	b.accepted = true
	return nil
}

// authorize checks that h's sender proved the identity of the rank it
// claims, failing closed when the ring and the transport disagree on
// whether streams are authenticated.
func (b *inbox) authorize(h Hello) error {
	switch {
	case b.ids == nil && h.FromID == "":
		return nil
	case b.ids == nil:
		return fmt.Errorf("%w: peer %q claimed rank %d of generation %d, but this ring lists no identities; give every rank Config.Identities",
			ErrUnauthorized, h.FromID, h.From, b.key.Generation)
	case h.FromID == "":
		return fmt.Errorf("%w: an unauthenticated peer claimed rank %d of generation %d; this ring accepts only the members' certificates",
			ErrUnauthorized, h.From, b.key.Generation)
	case h.From < 0 || h.From >= len(b.ids):
		return fmt.Errorf("%w: peer %q claimed rank %d of generation %d, which has %d ranks",
			ErrUnauthorized, h.FromID, h.From, b.key.Generation, len(b.ids))
	case h.FromID != b.ids[h.From]:
		return fmt.Errorf("%w: peer %q claimed rank %d of generation %d, which is %q",
			ErrUnauthorized, h.FromID, h.From, b.key.Generation, b.ids[h.From])
	}
	return nil
}

func (b *inbox) Deliver(ctx context.Context, m Message) error {
	select {
	case b.ch <- m:
		return nil
	default:
	}
	select {
	case b.ch <- m:
		return nil
	case <-b.closed:
		return ErrClosed
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

func (b *inbox) StreamEnded(err error) {
	b.endOnce.Do(func() {
		b.endErr = err
		close(b.ended)
	})
}

func (b *inbox) Done() <-chan struct{} { return b.closed }

// close drops the queued messages; later Deliver calls fail with ErrClosed.
func (b *inbox) close() {
	b.closeOnce.Do(func() { close(b.closed) })
	for {
		select {
		case m := <-b.ch:
			m.Free()
		default:
			return
		}
	}
}

// recv returns the next message, waiting at most d (timer is reused by the
// caller; d ≤ 0 only takes what is queued). Messages queued before the stream ended are returned first.
func (b *inbox) recv(ctx context.Context, timer *time.Timer, d time.Duration) (Message, error) {
	select {
	case m := <-b.ch:
		return m, nil
	default:
	}
	if d <= 0 {
		return Message{}, timeoutError{d}
	}
	timer.Reset(d)
	defer timer.Stop()
	select {
	case m := <-b.ch:
		return m, nil
	case <-b.ended:
		select {
		case m := <-b.ch:
			return m, nil
		default:
			return Message{}, b.endErr
		}
	case <-b.closed:
		return Message{}, ErrClosed
	case <-ctx.Done():
		return Message{}, context.Cause(ctx)
	case <-timer.C:
		return Message{}, timeoutError{d}
	}
}
