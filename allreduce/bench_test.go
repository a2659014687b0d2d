package allreduce

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"go.uber.org/zap"
)

// BenchmarkAllReduceGRPC measures a 2-rank ring over loopback gRPC in one
// process (both ranks share the CPUs); busbw is reported in GB/s. The speed
// targets are measured with real processes by `ringtrain bench allreduce`.
func BenchmarkAllReduceGRPC(b *testing.B) {
	for _, mib := range []int{1, 4, 16, 64} {
		b.Run(fmt.Sprintf("n=2/MiB=%d", mib), func(b *testing.B) {
			const n = 2
			ts := make([]Transport, n)
			for i := range ts {
				ts[i] = benchTransport(b)
			}
			addrs := []string{ts[0].Addr(), ts[1].Addr()}
			rings := make([]*Ring, n)
			errs := make([]error, n)
			done := make(chan int)
			for i := range n {
				go func() {
					rings[i], errs[i] = NewRing(context.Background(), ts[i], Config{RunID: "bench", Generation: 1, Members: addrs, Rank: i, Logger: zap.NewNop()})
					done <- i
				}()
			}
			<-done
			<-done
			if err := errors.Join(errs...); err != nil {
				b.Fatal(err)
			}
			defer rings[0].Close()
			defer rings[1].Close()
			bufs := [][]float32{make([]float32, mib<<18), make([]float32, mib<<18)}
			b.SetBytes(int64(mib << 20))
			b.ResetTimer()
			for range b.N {
				go func() { errs[1] = rings[1].AllReduce(context.Background(), bufs[1]); done <- 1 }()
				errs[0] = rings[0].AllReduce(context.Background(), bufs[0])
				<-done
				if err := errors.Join(errs...); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(mib<<20)*float64(b.N)/b.Elapsed().Seconds()/1e9, "busbw_GB/s")
		})
	}
}

func benchTransport(b *testing.B) *GRPCTransport {
	lis, err := netListen()
	if err != nil {
		b.Fatal(err)
	}
	tr, err := NewGRPCTransport(lis)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { tr.Close() })
	return tr
}
