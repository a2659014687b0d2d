package allreduce

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// WireConfig describes one rank of the wire benchmark (`ringtrain bench
// wire`), the ceiling the all-reduce benchmark is read against: the same
// ring of processes and the same bytes per rank, over bare TCP with no gRPC,
// no framing and no arithmetic.
type WireConfig struct {
	// Listener is this rank's open TCP listener, closed by WireBench when it
	// returns; Members are every rank's listener address in rank order,
	// Rank indexes them.
	Listener net.Listener
	Members  []string
	Rank     int
	// SizesMiB are the all-reduce sizes to stand in for (default 1, 4, 16,
	// 64); Warmup and Iters as in BenchConfig (zero: 3 and 20).
	SizesMiB      []float64
	Warmup, Iters int
	// WriteBytes is the size of each write (default 1 MiB; 4 and 16 MiB were no faster).
	WriteBytes int
	// IOTimeout bounds connecting and every read and write (default 30 s):
	// a dead or stalled neighbour fails the benchmark instead of hanging it.
	IOTimeout time.Duration
}

const wireMagic = 0x72696e67 // "ring"

// WireBench streams, per iteration, exactly the bytes a ring all-reduce of
// each size sends per rank, 2(N−1)/N of the buffer, to the right neighbour
// while reading as many from the left, and checks every byte received. The
// result has the fields of BenchResult (system "tcp-ring-wire"): its busbw is
// the most any ring all-reduce over TCP could reach on these processes.
// Rank 0's times are the ones to report; a rank that receives a wrong byte
// returns an error.
func WireBench(ctx context.Context, cfg WireConfig) (_ []BenchResult, err error) {
	n := len(cfg.Members)
	if n < 2 {
		return nil, fmt.Errorf("allreduce: wire bench: %d members; a ring needs at least 2", n)
	}
	if cfg.Rank < 0 || cfg.Rank >= n {
		return nil, fmt.Errorf("allreduce: wire bench: rank %d is outside [0, %d)", cfg.Rank, n)
	}
	if cfg.Listener == nil {
		return nil, errors.New("allreduce: wire bench: no listener")
	}
	defer cfg.Listener.Close()
	cfg.SizesMiB, cfg.Warmup, cfg.Iters = benchPlan(cfg.SizesMiB, cfg.Warmup, cfg.Iters)
	if cfg.WriteBytes <= 0 {
		cfg.WriteBytes = 1 << 20
	}
	if cfg.IOTimeout <= 0 {
		cfg.IOTimeout = 30 * time.Second
	}
	left, right := Left(n, cfg.Rank), Right(n, cfg.Rank)

	out, in, err := wireConnect(ctx, cfg, left, right)
	if err != nil {
		return nil, err
	}
	defer out.Close()
	defer in.Close()
	stop := context.AfterFunc(ctx, func() {
		out.Close()
		in.Close()
	})
	defer stop()

	mine, theirs := wirePattern(cfg.Rank, cfg.WriteBytes), wirePattern(left, cfg.WriteBytes)
	rbuf := make([]byte, cfg.WriteBytes)
	var results []BenchResult
	for _, mib := range cfg.SizesMiB {
		size := int64(mib * (1 << 20) / 4 * 4) // whole float32s, as the all-reduce
		total := size * 2 * int64(n-1) / int64(n)
		times := make([]float64, 0, cfg.Iters)
		for i := range cfg.Warmup + cfg.Iters {
			start := time.Now()
			var werr error
			var wg sync.WaitGroup
			wg.Go(func() { werr = wireSend(out, mine, total, cfg.IOTimeout) })
			rerr := wireRecv(in, theirs, rbuf, total, cfg.IOTimeout)
			if rerr != nil {
				out.Close() // unblock the sender
			}
			wg.Wait()
			if err := errors.Join(rerr, werr); err != nil {
				if ctx.Err() != nil {
					return results, context.Cause(ctx)
				}
				return results, fmt.Errorf("allreduce: wire bench, %g MiB: %w", mib, err)
			}
			if i >= cfg.Warmup {
				times = append(times, time.Since(start).Seconds())
			}
		}
		// A wrong byte is an error above.
		results = append(results, busResult("tcp-ring-wire", n, mib, size, times, true))
	}
	return results, nil
}

// wireConnect dials the right neighbour and accepts the left one, each
// announcing itself with (magic, rank), within cfg.IOTimeout.
func wireConnect(ctx context.Context, cfg WireConfig, left, right int) (out, in net.Conn, err error) {
	deadline := time.Now().Add(cfg.IOTimeout)
	type accepted struct {
		c   net.Conn
		err error
	}
	acc := make(chan accepted, 1)
	go func() {
		if tl, ok := cfg.Listener.(*net.TCPListener); ok {
			tl.SetDeadline(deadline)
		}
		c, err := cfg.Listener.Accept()
		if err == nil {
			var hello [8]byte
			c.SetReadDeadline(deadline)
			if _, err = io.ReadFull(c, hello[:]); err == nil {
				magic, from := binary.LittleEndian.Uint32(hello[:4]), int(binary.LittleEndian.Uint32(hello[4:]))
				if magic != wireMagic || from != left {
					err = fmt.Errorf("accepted a connection from rank %d (magic %#x), want rank %d", from, magic, left)
				}
			}
			if err != nil {
				c.Close()
				c = nil
			}
		}
		acc <- accepted{c, err}
	}()
	dctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	var d net.Dialer
	for {
		out, err = d.DialContext(dctx, "tcp", cfg.Members[right])
		if err == nil || dctx.Err() != nil {
			break
		}
		select {
		case <-dctx.Done():
		case <-time.After(20 * time.Millisecond):
		}
	}
	if err == nil {
		var hello [8]byte
		binary.LittleEndian.PutUint32(hello[:4], wireMagic)
		binary.LittleEndian.PutUint32(hello[4:], uint32(cfg.Rank))
		out.SetWriteDeadline(deadline)
		if _, err = out.Write(hello[:]); err != nil {
			out.Close()
		}
	}
	if err != nil {
		cfg.Listener.Close() // ends the Accept
		if a := <-acc; a.c != nil {
			a.c.Close()
		}
		return nil, nil, fmt.Errorf("allreduce: wire bench: connect to rank %d (%s): %w", right, cfg.Members[right], err)
	}
	select {
	case a := <-acc:
		if a.err != nil {
			out.Close()
			return nil, nil, fmt.Errorf("allreduce: wire bench: accept rank %d: %w", left, a.err)
		}
		return out, a.c, nil
	case <-ctx.Done():
		cfg.Listener.Close()
		if a := <-acc; a.c != nil {
			a.c.Close()
		}
		out.Close()
		return nil, nil, context.Cause(ctx)
	}
}

// wirePattern is the block rank r sends over and over: distinct per rank so
// that a byte from the wrong sender or at the wrong offset is caught.
func wirePattern(r, n int) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(i*131 + r*29 + 7)
	}
	return p
}

func wireSend(c net.Conn, pat []byte, total int64, timeout time.Duration) error {
	for sent := int64(0); sent < total; {
		b := pat[:min(int64(len(pat)), total-sent)]
		c.SetWriteDeadline(time.Now().Add(timeout))
		k, err := c.Write(b)
		sent += int64(k)
		if err != nil {
			return fmt.Errorf("send: %w", err)
		}
	}
	return nil
}

// wireRecv reads total bytes and checks each against the left neighbour's
// pattern, which restarts every len(pat) bytes.
func wireRecv(c net.Conn, pat, buf []byte, total int64, timeout time.Duration) error {
	for got := int64(0); got < total; {
		off := int(got % int64(len(pat)))
		want := min(int64(len(pat)-off), total-got)
		c.SetReadDeadline(time.Now().Add(timeout))
		k, err := c.Read(buf[:want])
		if k > 0 && !bytes.Equal(buf[:k], pat[off:off+k]) {
			return fmt.Errorf("receive: wrong bytes at offset %d of %d", got, total)
		}
		got += int64(k)
		if err != nil {
			return fmt.Errorf("receive after %d of %d bytes: %w", got, total, err)
		}
	}
	return nil
}
