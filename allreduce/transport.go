package allreduce

import (
	"context"
	"fmt"
)

// Kind tells data messages from control messages.
type Kind uint8

const (
	// KindData carries one part of one collective.
	KindData Kind = iota + 1
	// KindAbort says that the sender's collective Seq failed; Suspect names
	// the rank it blames (-1: none) and Reason says why.
	KindAbort
	// KindHeartbeat says the sender is inside collective Seq, alive, and
	// waiting on its own left neighbour; it extends the receiver's patience.
	KindHeartbeat
)

// Hello opens a stream from rank From to rank To of a generation.
type Hello struct {
	Key      SessionKey
	From, To int
	// FromID and ToID are the identities of ranks From and To (see
	// Config.Identities); empty when the ring has none. They are never sent
	// as data: on Connect, ToID is the identity the dialled endpoint must
	// prove (GRPCTransport with TLS checks its certificate) and FromID this
	// side's own; on Accept, FromID is the identity the sender proved (the
	// name in its verified certificate), or "" when the transport
	// authenticates nothing. MemNetwork, a trusted test network, hands
	// FromID on as the sender gave it.
	FromID, ToID string
}

// Message is one message on a stream. Run and generation are fixed per
// stream (checked by the transports), so they are not repeated here.
type Message struct {
	Kind  Kind
	Seq   uint64 // collective sequence number within the generation, from 1
	Chunk uint32 // index of the message within the collective's schedule
	From  int
	// Payload holds little-endian elements (KindData): float32s, or int64s
	// for AllReduceInt64. On a received message the receiver owns it and
	// releases it with Free.
	Payload []byte
	// Parts, set only on received messages instead of Payload, hold the
	// payload where the transport received it (spread over its buffers, in
	// order); Release hands those buffers back. Free calls it.
	Parts   [][]byte
	Release func()
	Suspect int    // KindAbort
	Reason  string // KindAbort
}

// A Transport is a per-process endpoint: it listens once and lives across
// generations. A Ring listens for its session to receive the stream its left
// neighbour opens, and connects one stream to its right neighbour.
//
// Implementations: MemNetwork (in memory, with fault injection) and
// GRPCTransport.
type Transport interface {
	// Addr returns the address peers use to reach this endpoint.
	Addr() string
	// Listen makes the endpoint accept streams whose Hello carries key and
	// deliver them to h. It fails if the endpoint is closed, key is
	// registered already, or a newer generation of the run is registered
	// (ErrStaleGeneration). The returned func unregisters; it is idempotent.
	Listen(key SessionKey, h Handler) (unregister func(), err error)
	// Connect opens an ordered, reliable stream to the endpoint at addr and
	// performs the Hello handshake, bounded by ctx. The peer waits (within
	// ctx) until it has registered hello.Key, then accepts, or rejects the
	// stream with a *GenerationError (stale generation, wrong run).
	Connect(ctx context.Context, addr string, hello Hello) (Link, error)
	// Close ends every stream and unregisters every session. Idempotent.
	Close() error
}

// A Link is the sending end of one stream.
type Link interface {
	// Send transmits m. It blocks under flow control until ctx is done.
	// The transport may keep reading m.Payload after Send returns (to send
	// it without a copy), until Flush returns. After a failure the link is
	// dead and every Send returns the same error. Send and Flush must not be
	// called concurrently with themselves or each other.
	Send(ctx context.Context, m *Message) error
	// Flush waits until the transport no longer reads any payload passed to
	// Send, bounded by ctx (after which the link is dead). Even then it
	// returns only when no payload is read any more, or after a short grace
	// when the stream has died. It returns nil when every payload was
	// written, even if the stream ended afterwards: that failure belongs to
	// the next Send.
	Flush(ctx context.Context) error
	// Close ends the stream; the peer's Handler sees StreamEnded. Idempotent.
	Close() error
}

// A Handler is the receiving side of a registered session.
type Handler interface {
	// Accept is called with the Hello of an incoming stream; an error
	// rejects the stream.
	Accept(h Hello) error
	// Deliver hands over the next message of the accepted stream, in order.
	// It blocks while the session's bounded buffer is full, until ctx is
	// done or the session is closed (ErrClosed). On success the handler
	// owns the payload (and frees it); on failure the caller still does.
	Deliver(ctx context.Context, m Message) error
	// StreamEnded reports that the accepted stream ended, and why.
	StreamEnded(err error)
	// Done is closed when the session closes.
	Done() <-chan struct{}
}

// PayloadLen returns the payload's length in bytes.
func (m *Message) PayloadLen() int {
	n := len(m.Payload)
	for _, p := range m.Parts {
		n += len(p)
	}
	return n
}

// Free releases a received message's payload memory; m must not be used
// afterwards.
func (m *Message) Free() {
	if m.Release != nil {
		m.Release()
	}
	putPayload(m.Payload)
	m.Payload, m.Parts, m.Release = nil, nil, nil
}

func (k Kind) String() string {
	switch k {
	case KindData:
		return "data"
	case KindAbort:
		return "abort"
	case KindHeartbeat:
		return "heartbeat"
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}
