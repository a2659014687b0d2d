package allreduce

import (
	"bytes"
	"encoding/binary"
	"io"
	"math/rand/v2"
	"net"
	"testing"
	"time"
)

// tcpPair returns the two ends of a loopback TCP connection.
func tcpPair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	lis, err := netListen()
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	acc := make(chan net.Conn, 1)
	go func() {
		c, _ := lis.Accept()
		acc <- c
	}()
	client, err = net.Dial("tcp", lis.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server = <-acc
	if server == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

func frameHeader(typ byte, n int) []byte {
	h := make([]byte, 9)
	h[0], h[1], h[2], h[3] = byte(n>>16), byte(n>>8), byte(n), typ
	binary.BigEndian.PutUint32(h[5:], 1)
	return h
}

func fill(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// gRPC's unbuffered writes (a DATA frame as a header then its pieces, other
// frames whole), replayed at random: the peer must read exactly the bytes
// written, in order, although unpinned pieces are overwritten as soon as
// Write returns and pinned ones as soon as unpin returns.
func TestGatherConnKeepsTheByteStream(t *testing.T) {
	client, server := tcpPair(t)
	g := newGatherConn(client)
	defer g.Close()
	rng := rand.New(rand.NewPCG(1, 2))
	var want bytes.Buffer
	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(server)
		got <- b
	}()
	write := func(p []byte) {
		t.Helper()
		want.Write(p)
		if n, err := g.Write(p); n != len(p) || err != nil {
			t.Fatalf("Write: %d, %v", n, err)
		}
	}
	for range 300 {
		switch rng.IntN(4) {
		case 0: // a control frame, e.g. WINDOW_UPDATE
			write(append(frameHeader(0x8, 4), 0, 0, 1, 0))
		case 1: // an empty DATA frame (end of stream)
			write(frameHeader(0x0, 0))
		default: // a DATA frame of pieces, some large, some pinned
			var pieces, pinned [][]byte
			var isPinned []bool
			total := 0
			for range 1 + rng.IntN(3) {
				p := fill(rng, []int{5, 30, 3000, 9000, 16384}[rng.IntN(5)])
				pin := len(p) > gatherCopyMax && rng.IntN(2) == 0
				if pin {
					g.pin(p)
					pinned = append(pinned, p)
				}
				pieces, isPinned = append(pieces, p), append(isPinned, pin)
				total += len(p)
			}
			write(frameHeader(0x0, total))
			for i, p := range pieces {
				write(p)
				if !isPinned[i] {
					clear(p) // the caller may reuse it now
				}
			}
			for _, p := range pinned {
				g.unpin(p)
				clear(p) // the owner may reuse it now
			}
		}
	}
	g.mu.Lock()
	held := g.held
	g.mu.Unlock()
	if held != 0 {
		t.Fatalf("%d bytes still held after the last frame", held)
	}
	if err := client.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	select {
	case b := <-got:
		if !bytes.Equal(b, want.Bytes()) {
			t.Fatalf("peer read %d bytes, want %d; first difference at %d", len(b), want.Len(), firstDiff(b, want.Bytes()))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("peer did not receive the stream")
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// A frame that gRPC stops writing halfway (waiting for flow-control credit)
// is not kept back: the watchdog sends what is held.
func TestGatherConnFlushesWhenIdle(t *testing.T) {
	client, server := tcpPair(t)
	g := newGatherConn(client)
	defer g.Close()
	p := fill(rand.New(rand.NewPCG(3, 4)), 16384)
	g.pin(p)
	defer g.unpin(p)
	hdr := frameHeader(0x0, 2*len(p)) // more is announced than written
	g.Write(hdr)
	g.Write(p)
	server.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, len(hdr)+len(p))
	if _, err := io.ReadFull(server, buf); err != nil {
		t.Fatalf("held bytes were not sent: %v", err)
	}
	if !bytes.Equal(buf[9:], p) {
		t.Fatal("wrong bytes")
	}
}

// A write blocked on a peer that stopped reading neither blocks pinning nor
// outlives Close: a dead neighbour cannot hang the sender.
func TestGatherConnCloseUnblocksAWrite(t *testing.T) {
	client, _ := tcpPair(t) // the server end never reads
	g := newGatherConn(client)
	p := make([]byte, 1<<20)
	g.pin(p)
	done := make(chan error, 1)
	go func() {
		for {
			g.Write(frameHeader(0x0, len(p)))
			if _, err := g.Write(p); err != nil {
				done <- err
				return
			}
			if _, err := g.Write(append(frameHeader(0x8, 4), 0, 0, 1, 0)); err != nil {
				done <- err
				return
			}
		}
	}()
	time.Sleep(200 * time.Millisecond) // the socket buffers fill up
	// The sender can still pin its next payload: it never waits for a write.
	pinned := make(chan struct{})
	go func() {
		g.pin(make([]byte, 1<<20))
		close(pinned)
	}()
	select {
	case <-pinned:
	case <-time.After(2 * time.Second):
		t.Fatal("pin waited for a blocked write")
	}
	g.Close()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("want an error after Close")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("write still blocked 5 s after Close")
	}
	g.unpin(p) // returns although nothing can be written
}
