package allreduce

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"
)

// Ring is one generation of the ring of ranks, bound to a Transport. Build it
// with NewRing on every member; Close it before building the next generation
// on the same Transport (or keep it open: generations never mix).
type Ring struct {
	sess       Session
	cfg        Config
	log        *zap.Logger
	in         *inbox
	link       Link // to the right neighbour; nil when the ring has one rank
	unregister func()

	mu     sync.Mutex // serializes collectives; guards seq and broken
	seq    uint64
	broken error

	ctx    context.Context // cancelled by Close; bounds background aborts
	cancel context.CancelFunc

	stateMu   sync.Mutex // guards closing against wg.Add
	closing   bool
	wg        sync.WaitGroup // background abort senders
	closeOnce sync.Once
}

// NewRing builds this rank's ring of the generation described by cfg on t:
// it registers the generation to receive from the left neighbour and connects
// to the right neighbour, waiting at most cfg.ConnectTimeout (default
// PeerTimeout) for it to build the same generation.
func NewRing(ctx context.Context, t Transport, cfg Config) (*Ring, error) {
	cfg = cfg.withDefaults()
	sess, err := NewSession(cfg)
	if err != nil {
		return nil, err
	}
	n, rank := sess.Size(), sess.Rank()
	r := &Ring{
		sess: sess,
		cfg:  cfg,
		log: cfg.Logger.Named("allreduce").With(zap.String("run", sess.RunID()),
			zap.Uint64("generation", sess.Generation()), zap.Int("rank", rank), zap.Int("size", n)),
		in: newInbox(sess, inboxSlots(cfg.ChunkBytes)),
	}
	r.unregister, err = t.Listen(sess.Key(), r.in)
	if err != nil {
		return nil, fmt.Errorf("allreduce: gen %d rank %d: listen on %s: %w", sess.Generation(), rank, t.Addr(), err)
	}
	if n > 1 {
		right := sess.Right()
		cctx, cancel := context.WithTimeoutCause(ctx, cfg.ConnectTimeout, timeoutError{cfg.ConnectTimeout})
		r.link, err = t.Connect(cctx, sess.Addr(right), Hello{Key: sess.Key(), From: rank, To: right,
			FromID: sess.Identity(rank), ToID: sess.Identity(right)})
		cancel()
		if err != nil {
			r.unregister()
			r.in.close()
			return nil, r.peerErr("connect to", right, err)
		}
	}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	r.log.Debug("ring ready")
	return r, nil
}

// Session returns the ring's membership generation.
func (r *Ring) Session() Session { return r.sess }

// AllReduce replaces buf, on every rank, with the element-wise sum of all
// ranks' bufs. All ranks must pass the same length.
func (r *Ring) AllReduce(ctx context.Context, buf []float32) error {
	return r.allReduce(ctx, float32s(buf))
}

// AllReduceInt64 replaces buf, on every rank, with the element-wise sum of
// all ranks' bufs in wrap-around two's-complement int64 arithmetic. That sum
// is exact and associative, so its bits depend neither on the ring order nor
// on Config.ChunkBytes: the basis of exact, order-independent training (sum
// fixed-point values). All ranks must pass the same length and call
// AllReduceInt64: a rank that calls AllReduce with the same length instead
// sends payloads of the wrong size, and the collective fails with
// ErrProtocol.
func (r *Ring) AllReduceInt64(ctx context.Context, buf []int64) error {
	return r.allReduce(ctx, int64s(buf))
}

// AllReduceInt64ToFloat32 sums acc over the ranks as AllReduceInt64 does
// and leaves in out, on every rank, the float32 images of the sums that
// convert makes: convert(lo, hi) must set out[lo:hi] from acc[lo:hi] alone
// (the same function on every rank). Each rank converts the chunk whose sum
// it completes in the reduce-scatter and the all-gather carries float32s,
// so an element costs 12 bytes on the wire instead of AllReduceInt64's 16.
// Afterwards only this rank's chunk of acc holds final sums. len(out) must
// equal len(acc); every rank must call it with the same length.
func (r *Ring) AllReduceInt64ToFloat32(ctx context.Context, acc []int64, out []float32, convert func(lo, hi int)) error {
	if len(out) != len(acc) {
		return fmt.Errorf("allreduce: gen %d rank %d: AllReduceInt64ToFloat32: len(out) %d != len(acc) %d", r.sess.Generation(), r.sess.Rank(), len(out), len(acc))
	}
	v := fixedFloats{acc: acc, out: out, convert: convert}
	err := r.collective(ctx, v, func() plan {
		return fixedPlan(len(acc), r.sess.Size(), r.sess.Rank(), r.cfg.ChunkBytes/8)
	})
	if err == nil && r.sess.Size() == 1 {
		convert(0, len(acc))
	}
	return err
}

// fixedPlan is allReducePlan over fixedFloats: the reduce-scatter on the
// integers [0, l), its last receives finishing this rank's chunk, and the
// all-gather on the floats [l, 2l).
func fixedPlan(l, n, rank, maxPart int) plan {
	p := allReducePlan(l, n, rank, maxPart)
	if n < 2 {
		return p
	}
	k := len(p.recvs) / (2 * (n - 1)) // parts per step
	for i := range p.sends {
		if i >= (n-1)*k {
			p.sends[i].off += l
		}
	}
	for i := range p.recvs {
		switch {
		case i >= (n-1)*k:
			p.recvs[i].off += l
		case i >= (n-2)*k:
			p.recvs[i].finish = true
		}
	}
	return p
}

// allReduce sums v over the ring; a part carries at most ChunkBytes of
// whole elements.
func (r *Ring) allReduce(ctx context.Context, v elems) error {
	return r.collective(ctx, v, func() plan {
		return allReducePlan(v.count(), r.sess.Size(), r.sess.Rank(), r.cfg.ChunkBytes/v.sizeOf(span{}))
	})
}

// AllReduceMean replaces buf with the element-wise mean over all ranks.
func (r *Ring) AllReduceMean(ctx context.Context, buf []float32) error {
	if err := r.AllReduce(ctx, buf); err != nil {
		return err
	}
	n := float32(r.sess.Size())
	for i := range buf {
		buf[i] /= n
	}
	return nil
}

// Broadcast copies root's buf into every other rank's buf (to hand the full
// state to a joining worker). All ranks must pass the same length.
func (r *Ring) Broadcast(ctx context.Context, buf []float32, root int) error {
	if root < 0 || root >= r.sess.Size() {
		return fmt.Errorf("allreduce: gen %d rank %d: broadcast root %d is outside [0, %d)", r.sess.Generation(), r.sess.Rank(), root, r.sess.Size())
	}
	v := float32s(buf)
	return r.collective(ctx, v, func() plan {
		return broadcastPlan(v.count(), r.sess.Size(), r.sess.Rank(), root, r.cfg.ChunkBytes/v.sizeOf(span{}))
	})
}

// Barrier returns once every rank has entered it.
func (r *Ring) Barrier(ctx context.Context) error {
	return r.collective(ctx, float32s(nil), func() plan {
		return allReducePlan(0, r.sess.Size(), r.sess.Rank(), r.cfg.ChunkBytes/4)
	})
}

// Close ends this generation's streams and unregisters it; the Transport
// survives for the next generation. A collective in flight fails. Idempotent.
func (r *Ring) Close() error {
	r.closeOnce.Do(func() {
		r.stateMu.Lock()
		r.closing = true
		r.stateMu.Unlock()
		r.cancel()
		r.unregister()
		r.in.close()
		if r.link != nil {
			_ = r.link.Close()
		}
		r.wg.Wait()
		r.log.Debug("ring closed")
	})
	return nil
}

func (r *Ring) isClosing() bool {
	r.stateMu.Lock()
	defer r.stateMu.Unlock()
	return r.closing
}

// collective runs one collective under r.mu and breaks the ring on failure.
func (r *Ring) collective(ctx context.Context, buf elems, mk func() plan) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.isClosing() {
		return fmt.Errorf("allreduce: gen %d rank %d: %w", r.sess.Generation(), r.sess.Rank(), ErrClosed)
	}
	if r.broken != nil {
		return fmt.Errorf("allreduce: gen %d rank %d: %w: %w", r.sess.Generation(), r.sess.Rank(), ErrBroken, r.broken)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("allreduce: gen %d rank %d: %w", r.sess.Generation(), r.sess.Rank(), context.Cause(ctx))
	}
	if r.sess.Size() == 1 {
		return nil
	}
	r.seq++
	err := r.run(ctx, r.seq, buf, mk())
	if err != nil {
		r.broken = err
		r.abortAsync(r.seq, err)
		r.log.Debug("collective failed", zap.Uint64("seq", r.seq), zap.Error(err))
	}
	return err
}

// plan is one collective as two ordered lists: the parts this rank sends and
// the parts it receives, as spans of whole elements (of any size). Send i
// waits until the first sends[i].after receives are consumed (its data is
// what they produced).
type plan struct {
	sends []sendItem
	recvs []recvItem
}

type sendItem struct {
	span
	after int
}

type recvItem struct {
	span
	add    bool // reduce-scatter: add into buf; otherwise overwrite
	finish bool // the part is final once applied: elems.finish
}

// allReducePlan splits each of the n chunks of Schedule of a buffer of l
// elements into the same number of parts of at most maxPart elements, so
// that part j of step t feeds part j of step t+1.
func allReducePlan(l, n, rank, maxPart int) plan {
	steps := Schedule(n, rank)
	k := partsFor(segment(l, n, 0).len, maxPart) // chunk 0 is the largest
	p := plan{sends: make([]sendItem, 0, len(steps)*k), recvs: make([]recvItem, 0, len(steps)*k)}
	for t, st := range steps {
		send, recv := segment(l, n, st.SendChunk), segment(l, n, st.RecvChunk)
		for j := 0; j < k; j++ {
			after := 0
			if t > 0 {
				after = (t-1)*k + j + 1
			}
			p.sends = append(p.sends, sendItem{span: part(send, k, j), after: after})
			p.recvs = append(p.recvs, recvItem{span: part(recv, k, j), add: st.Phase == ReduceScatter})
		}
	}
	return p
}

// broadcastPlan pipelines the buffer of l elements from root along the ring
// in parts of at most maxPart elements: every rank but root receives each
// part and forwards it unless its right is root.
func broadcastPlan(l, n, rank, root, maxPart int) plan {
	k := partsFor(l, maxPart)
	whole := span{off: 0, len: l}
	var p plan
	if rank != root {
		p.recvs = make([]recvItem, k)
		for j := range p.recvs {
			p.recvs[j] = recvItem{span: part(whole, k, j)}
		}
	}
	if Right(n, rank) != root {
		p.sends = make([]sendItem, k)
		for j := range p.sends {
			after := 0
			if rank != root {
				after = j + 1
			}
			p.sends[j] = sendItem{span: part(whole, k, j), after: after}
		}
	}
	return p
}

// run executes p: a sender and a receiver run concurrently, the receiver
// adding or copying each part as it arrives and the sender forwarding parts
// as soon as they are ready.
func (r *Ring) run(ctx context.Context, seq uint64, buf elems, p plan) error {
	g, gctx := errgroup.WithContext(ctx)
	// One token per consumed receive; sized so that the receiver never blocks.
	ready := make(chan struct{}, len(p.recvs))
	if len(p.sends) > 0 {
		g.Go(func() error { return r.sendLoop(gctx, seq, buf, p.sends, ready) })
	}
	if len(p.recvs) > 0 {
		g.Go(func() error { return r.recvLoop(gctx, seq, buf, p.recvs, ready) })
	}
	return g.Wait()
}

func (r *Ring) sendLoop(ctx context.Context, seq uint64, buf elems, sends []sendItem, ready <-chan struct{}) (err error) {
	right := r.sess.Right()
	consumed := 0
	// The link may still read parts of buf: wait until it is done before
	// buf goes back to the caller, on success and failure alike.
	defer func() {
		fctx, cancel := context.WithTimeoutCause(context.WithoutCancel(ctx), r.cfg.PeerTimeout, timeoutError{r.cfg.PeerTimeout})
		defer cancel()
		if ferr := r.link.Flush(fctx); ferr != nil && err == nil {
			err = r.sendErr(seq, len(sends)-1, right, ferr)
		}
	}()
	var heartbeat *time.Timer // while we wait on the left, tell the right we are alive
	defer func() {
		if heartbeat != nil {
			heartbeat.Stop()
		}
	}()
	m := Message{Kind: KindData, Seq: seq, From: r.sess.Rank()}
	for i, it := range sends {
		for consumed < it.after {
			select {
			case <-ready:
				consumed++
				continue
			default:
			}
			if heartbeat == nil {
				heartbeat = time.NewTimer(r.heartbeatInterval())
			} else {
				heartbeat.Reset(r.heartbeatInterval())
			}
			select {
			case <-ready:
				consumed++
			case <-heartbeat.C:
				hb := Message{Kind: KindHeartbeat, Seq: seq, Chunk: uint32(i), From: r.sess.Rank()}
				if err := r.send(ctx, &hb); err != nil {
					return r.sendErr(seq, i, right, err)
				}
			case <-ctx.Done():
				return r.opErr(seq, context.Cause(ctx))
			}
		}
		m.Chunk = uint32(i)
		m.Payload = buf.wire(it.span)
		if err := r.send(ctx, &m); err != nil {
			return r.sendErr(seq, i, right, err)
		}
	}
	return nil
}

func (r *Ring) heartbeatInterval() time.Duration { return max(time.Millisecond, r.cfg.PeerTimeout/4) }

func (r *Ring) sendErr(seq uint64, i, right int, err error) error {
	if errors.Is(err, ErrClosed) {
		return r.opErr(seq, err)
	}
	return r.peerErr(fmt.Sprintf("seq %d: send chunk %d to", seq, i), right, err)
}

// send sends m, failing with a timeout after PeerTimeout. When ctx ends
// (another part of the collective failed) an in-flight send gets a short
// grace before it is interrupted: interrupting a gRPC send kills the stream,
// and the stream should survive to carry the abort to the right neighbour.
func (r *Ring) send(ctx context.Context, m *Message) error {
	d := r.cfg.PeerTimeout
	sctx, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
	defer cancel(nil)
	timeout := time.AfterFunc(d, func() { cancel(timeoutError{d}) })
	defer timeout.Stop()
	var graceMu sync.Mutex
	var grace *time.Timer
	stop := context.AfterFunc(ctx, func() {
		graceMu.Lock()
		defer graceMu.Unlock()
		grace = time.AfterFunc(min(d/2, time.Second), func() { cancel(context.Cause(ctx)) })
	})
	defer func() {
		stop()
		graceMu.Lock()
		if grace != nil {
			grace.Stop()
		}
		graceMu.Unlock()
	}()
	return r.link.Send(sctx, m)
}

// recvLoop consumes the parts from the left in order. A wait ends with a
// timeout after PeerTimeout without any message; heartbeats (the left is
// alive but waiting on its own left) extend it, up to 2×PeerTimeout in all,
// so that the rank next to a failed peer detects it first and its abort,
// naming the culprit, reaches everyone else before they time out.
func (r *Ring) recvLoop(ctx context.Context, seq uint64, buf elems, recvs []recvItem, ready chan<- struct{}) error {
	left := r.sess.Left()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for i, it := range recvs {
		var m Message
		var err error
		for start, beats := time.Now(), 0; ; beats++ {
			m, err = r.in.recv(ctx, timer, min(r.cfg.PeerTimeout, 2*r.cfg.PeerTimeout-time.Since(start)))
			if errors.Is(err, ErrPeerTimeout) && beats > 0 {
				err = fmt.Errorf("%w (it was alive but stalled)", timeoutError{2 * r.cfg.PeerTimeout})
			}
			if err != nil || m.Kind != KindHeartbeat {
				break
			}
		}
		if err != nil {
			if errors.Is(err, ErrClosed) {
				return r.opErr(seq, err)
			}
			return r.peerErr(fmt.Sprintf("seq %d: recv chunk %d from", seq, i), left, err)
		}
		if m.Kind == KindAbort {
			m.Free()
			return r.abortErr(seq, m)
		}
		if want := buf.sizeOf(it.span) * it.len; m.Kind != KindData || m.Seq != seq || m.Chunk != uint32(i) || m.PayloadLen() != want {
			err := r.peerErr(fmt.Sprintf("seq %d: recv chunk %d from", seq, i), left,
				fmt.Errorf("%w: got %v seq %d chunk %d with %d bytes, want data seq %d chunk %d with %d bytes",
					ErrProtocol, m.Kind, m.Seq, m.Chunk, m.PayloadLen(), seq, i, want))
			m.Free() // after PayloadLen
			return err
		}
		if m.Parts != nil {
			applyParts(buf, it.span, m.Parts, it.add)
		} else {
			buf.apply(it.span, m.Payload, it.add)
		}
		m.Free()
		if it.finish {
			buf.finish(it.span)
		}
		ready <- struct{}{}
	}
	return nil
}

// timeoutError is the cause of a context that hit PeerTimeout.
type timeoutError struct{ d time.Duration }

func (e timeoutError) Error() string { return fmt.Sprintf("%v after %v", ErrPeerTimeout, e.d) }
func (e timeoutError) Unwrap() error { return ErrPeerTimeout }

// abortCause is the cause carried by an abort from the left neighbour; it
// keeps the originator's suspect and reason so that forwarding does not nest.
type abortCause struct {
	from, suspect int
	reason        string
}

func (e *abortCause) Error() string {
	return fmt.Sprintf("%v: rank %d reports: %s", ErrAborted, e.from, e.reason)
}
func (e *abortCause) Unwrap() error { return ErrAborted }

func (r *Ring) abortErr(seq uint64, m Message) error {
	suspect := m.Suspect
	switch {
	case suspect < 0 || suspect >= r.sess.Size():
		suspect = r.sess.Left()
	case suspect == r.sess.Rank():
		// A peer could not hear from us: blame our link to the right.
		suspect = r.sess.Right()
	}
	return r.peerErr(fmt.Sprintf("seq %d: aborted, suspect", seq), suspect,
		&abortCause{from: m.From, suspect: m.Suspect, reason: m.Reason})
}

// abortAsync tells the right neighbour that collective seq failed (even when
// it is the suspect: a partitioned peer learns that it was cut off). The
// message is forwarded around the ring so every survivor learns the suspect
// without waiting for its own timeout.
func (r *Ring) abortAsync(seq uint64, err error) {
	if r.link == nil {
		return
	}
	suspect, reason := -1, err.Error()
	var ac *abortCause
	var pe *PeerError
	switch {
	case errors.As(err, &ac):
		suspect, reason = ac.suspect, ac.reason
	case errors.As(err, &pe):
		suspect = pe.Rank
	}
	r.stateMu.Lock()
	defer r.stateMu.Unlock()
	if r.closing {
		return
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		ctx, cancel := context.WithTimeout(r.ctx, r.cfg.PeerTimeout)
		defer cancel()
		m := Message{Kind: KindAbort, Seq: seq, From: r.sess.Rank(), Suspect: suspect, Reason: reason}
		if err := r.link.Send(ctx, &m); err != nil {
			r.log.Debug("abort not delivered", zap.Uint64("seq", seq), zap.Error(err))
		}
	}()
}

func (r *Ring) peerErr(op string, peer int, err error) error {
	return &PeerError{Rank: peer, Addr: r.sess.Addr(peer), Err: err,
		Generation: r.sess.Generation(), Self: r.sess.Rank(), Op: op}
}

func (r *Ring) opErr(seq uint64, err error) error {
	return fmt.Errorf("allreduce: gen %d rank %d: seq %d: %w", r.sess.Generation(), r.sess.Rank(), seq, err)
}
