package allreduce

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

func grpcTransport(t *testing.T) *GRPCTransport {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tr, err := NewGRPCTransport(lis, WithGRPCLogger(zaptest.NewLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	return tr
}

func grpcCluster(t *testing.T, n int) []Transport {
	t.Helper()
	ts := make([]Transport, n)
	for i := range ts {
		ts[i] = grpcTransport(t)
	}
	return ts
}

func TestAllReduceGRPC(t *testing.T) {
	for n := 1; n <= 4; n++ {
		t.Run(fmt.Sprintf("n=%d", n), func(t *testing.T) {
			ts := grpcCluster(t, n)
			rings := buildRings(t, ts, seq(n), 1, nil)
			for _, l := range []int{0, 1, max(0, n-1), n + 1, 10007} {
				checkAllReduce(t, rings, l)
			}
			if n == 3 {
				checkAllReduce(t, rings, 1000003)
			}
			checkFloatAllReduce(t, rings, 4099, uint64(n))
		})
	}
}

func TestAllReduceGRPCDefaultChunks(t *testing.T) {
	ts := grpcCluster(t, 2)
	rings := buildRings(t, ts, seq(2), 1, func(c *Config) { c.ChunkBytes = 0 })
	checkAllReduce(t, rings, 1000003)
}

func TestBackToBackGRPC(t *testing.T) {
	ts := grpcCluster(t, 3)
	rings := buildRings(t, ts, seq(3), 1, nil)
	for i := range 50 {
		checkAllReduce(t, rings, 1+(i*131)%3000)
	}
	errs := onAll(rings, func(rank int, r *Ring) error {
		buf := intData(5000, rank)
		if err := r.Broadcast(context.Background(), buf, 2); err != nil {
			return err
		}
		for i, v := range intData(5000, 2) {
			if buf[i] != v {
				return fmt.Errorf("broadcast [%d] = %v, want %v", i, buf[i], v)
			}
		}
		return r.Barrier(context.Background())
	})
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
}

// crashAfter wraps a Transport: at the `after`-th data send on its links it
// closes the real transport, as if the process died mid-collective; that
// send and every later one wait for the close and fail, so the victim never
// finishes the collective (a fast ring could otherwise send everything
// before the close took effect).
type crashAfter struct {
	Transport
	after int32
	sent  atomic.Int32
	once  sync.Once
	wg    sync.WaitGroup
}

func (c *crashAfter) Connect(ctx context.Context, addr string, h Hello) (Link, error) {
	l, err := c.Transport.Connect(ctx, addr, h)
	if err != nil {
		return nil, err
	}
	return crashLink{l, c}, nil
}

type crashLink struct {
	Link
	c *crashAfter
}

func (l crashLink) Send(ctx context.Context, m *Message) error {
	if m.Kind == KindData && l.c.sent.Add(1) >= l.c.after {
		l.c.once.Do(func() {
			l.c.wg.Add(1)
			go func() {
				defer l.c.wg.Done()
				l.c.Transport.Close()
			}()
		})
		l.c.wg.Wait()
		return fmt.Errorf("%w: crashed", ErrClosed)
	}
	return l.Link.Send(ctx, m)
}

func TestKillMidCollectiveGRPC(t *testing.T) {
	for _, c := range []struct {
		n    int
		kind int // into kinds
	}{{2, 0}, {4, 0}, {3, 1}} {
		n, k := c.n, kinds[c.kind]
		t.Run(fmt.Sprintf("%s/n=%d", k.name, n), func(t *testing.T) {
			ts := grpcCluster(t, n)
			victim := 1
			crash := &crashAfter{Transport: ts[victim], after: 5}
			defer crash.wg.Wait()
			wrapped := append([]Transport(nil), ts...)
			wrapped[victim] = crash
			rings := buildRings(t, wrapped, seq(n), 1, fast)
			start := time.Now()
			errs := onAll(rings, func(rank int, r *Ring) error { return k.sum(r, 200000, rank) })
			survivors := without(seq(n), victim)
			for i, pe := range expectPeerErrors(t, errs, survivors, time.Since(start)) {
				if pe.Rank != victim || pe.Addr != ts[victim].Addr() {
					t.Errorf("survivor %d names rank %d (%s), want %d (%s)", survivors[i], pe.Rank, pe.Addr, victim, ts[victim].Addr())
				}
			}
			for _, r := range rings {
				r.Close()
			}
			next := buildRings(t, ts, survivors, 2, nil)
			k.check(t, next, 100003)
			k.check(t, next, 1)
		})
	}
}

func TestHungPeerGRPC(t *testing.T) {
	ts := grpcCluster(t, 3)
	rings := buildRings(t, ts, seq(3), 1, fast)
	checkAllReduce(t, rings, 1000)
	// Rank 1 never enters the collective (stuck in its own code).
	start := time.Now()
	errs := onAll([]*Ring{rings[0], rings[2]}, func(i int, r *Ring) error {
		return r.AllReduce(context.Background(), intData(1000, 2*i))
	})
	for i, pe := range expectPeerErrors(t, errs, []int{0, 1}, time.Since(start)) {
		if pe.Rank != 1 {
			t.Errorf("survivor %d blames rank %d, want 1", 2*i, pe.Rank)
		}
	}
}

func TestStaleGenerationGRPC(t *testing.T) {
	ts := grpcCluster(t, 2)
	buildRings(t, ts[1:], []int{0}, 5, func(c *Config) { c.Members = []string{ts[1].Addr()} })
	// A process still at generation 4 reaches the peer at 5.
	_, err := NewRing(context.Background(), ts[0], testConfig(t, []string{ts[0].Addr(), ts[1].Addr()}, 4, 0))
	var pe *PeerError
	if !errors.Is(err, ErrStaleGeneration) || !errors.As(err, &pe) || pe.Rank != 1 ||
		!strings.Contains(err.Error(), "peer is at generation 5, this side is at generation 4") {
		t.Fatalf("gen 4 meets gen 5: %v, want ErrStaleGeneration naming rank 1 and both generations", err)
	}
	cfg := testConfig(t, []string{ts[0].Addr(), ts[1].Addr()}, 5, 0)
	cfg.RunID = "another-run"
	_, err = NewRing(context.Background(), ts[0], cfg)
	if !errors.Is(err, ErrWrongRun) || !strings.Contains(err.Error(), `"another-run"`) || !strings.Contains(err.Error(), `"run-test"`) {
		t.Fatalf("wrong run: %v, want ErrWrongRun naming both runs", err)
	}
}

func TestStaleTrafficGRPC(t *testing.T) {
	checkStaleTraffic(t, grpcCluster(t, 2))
}

func TestPeerNotListeningGRPC(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := lis.Addr().String()
	lis.Close()
	tr := grpcTransport(t)
	start := time.Now()
	cfg := testConfig(t, []string{tr.Addr(), dead}, 1, 0)
	fast(&cfg)
	_, err = NewRing(context.Background(), tr, cfg)
	var pe *PeerError
	if !errors.As(err, &pe) || pe.Rank != 1 || !errors.Is(err, ErrPeerTimeout) {
		t.Errorf("connect to a dead address: %v, want a peer timeout naming rank 1", err)
	}
	if time.Since(start) > testBound {
		t.Errorf("took %v", time.Since(start))
	}
}

func TestHealthAndCallerOwnedServer(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tr := NewGRPCEndpoint(lis.Addr().String(), WithGRPCLogger(zaptest.NewLogger(t)))
	srv := grpc.NewServer(GRPCServerOptions()...)
	tr.Register(srv)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	other := grpcTransport(t)

	conn, err := grpc.NewClient(tr.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	hc := healthpb.NewHealthClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, svc := range []string{"", "ringtrain.v1.Collective"} {
		resp, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: svc})
		if err != nil || resp.Status != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("health %q: %v %v, want SERVING", svc, resp, err)
		}
	}
	rings := buildRings(t, []Transport{tr, other}, seq(2), 1, nil)
	checkAllReduce(t, rings, 33333)
	for _, r := range rings {
		r.Close()
	}
	tr.Close()
	resp, err := hc.Check(ctx, &healthpb.HealthCheckRequest{})
	if err == nil && resp.Status == healthpb.HealthCheckResponse_SERVING {
		t.Errorf("health after Close: SERVING")
	}
	srv.Stop()
	<-served
}

func netListen() (net.Listener, error) { return net.Listen("tcp", "127.0.0.1:0") }

// freezeProxy forwards TCP to target until frozen; then it stops reading in
// both directions, as a partitioned link does: the sender's socket buffer
// fills and its writes block in the kernel.
type freezeProxy struct {
	lis    net.Listener
	frozen chan struct{}
	once   sync.Once
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  []net.Conn
}

func newFreezeProxy(t *testing.T, target string) *freezeProxy {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &freezeProxy{lis: lis, frozen: make(chan struct{})}
	p.wg.Go(func() {
		for {
			in, err := lis.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", target)
			if err != nil {
				in.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, in, out)
			p.mu.Unlock()
			p.wg.Go(func() { p.pipe(out, in) })
			p.wg.Go(func() { p.pipe(in, out) })
		}
	})
	t.Cleanup(p.close)
	return p
}

func (p *freezeProxy) pipe(dst, src net.Conn) {
	buf := make([]byte, 64<<10)
	for {
		select {
		case <-p.frozen:
			return // stop reading; the connections stay open until close
		default:
		}
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (p *freezeProxy) freeze() { p.once.Do(func() { close(p.frozen) }) }

func (p *freezeProxy) close() {
	p.freeze()
	p.lis.Close()
	p.mu.Lock()
	for _, c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// A link that stops carrying bytes mid-collective (partition, or a peer
// process frozen by SIGSTOP or docker pause) fails every rank within the
// bound although the sender's writes are stuck in the kernel, the rings
// close, and the ranks build the next generation.
func TestPartitionedLinkGRPC(t *testing.T) {
	ts := grpcCluster(t, 3)
	proxy := newFreezeProxy(t, ts[1].Addr())
	// Rank 0 reaches rank 1 through the proxy; everyone else directly.
	addrs := []string{ts[0].Addr(), proxy.lis.Addr().String(), ts[2].Addr()}
	rings := make([]*Ring, 3)
	errs := onAll(rings, func(i int, _ *Ring) error {
		cfg := testConfig(t, addrs, 1, i)
		cfg.ChunkBytes = DefaultChunkBytes
		fast(&cfg)
		var err error
		rings[i], err = NewRing(context.Background(), ts[i], cfg)
		return err
	})
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	checkAllReduce(t, rings, 1000)
	var frozenAt atomic.Int64
	time.AfterFunc(30*time.Millisecond, func() {
		frozenAt.Store(time.Now().UnixNano())
		proxy.freeze()
	})
	errs = onAll(rings, func(i int, r *Ring) error {
		buf := make([]float32, 4<<20)
		for range 100 { // 16 MiB each: more than gRPC's windows and the socket buffers hold
			if err := r.AllReduce(context.Background(), buf); err != nil {
				return err
			}
		}
		return nil
	})
	elapsed := time.Since(time.Unix(0, frozenAt.Load()))
	t.Logf("every rank failed %v after the freeze", elapsed.Round(time.Millisecond))
	expectPeerErrors(t, errs, []int{0, 1, 2}, elapsed)
	closed := make(chan struct{})
	go func() {
		for _, r := range rings {
			r.Close()
		}
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(2 * time.Second):
		t.Fatal("rings still closing 2 s after the partition")
	}
	next := buildRings(t, ts, seq(3), 2, nil)
	checkAllReduce(t, next, 100003)
}
