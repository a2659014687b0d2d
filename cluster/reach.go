package cluster

import (
	"context"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// ReachPeriod is how often WatchReachability checks the etcd endpoints.
const ReachPeriod = 5 * time.Second

// WatchReachability checks every period, until the returned stop is
// called, that each etcd endpoint accepts a TCP connection and answers
// etcd's Status, and logs a warning naming each one that does not and why
// (connection refused, no route, a TLS or auth failure, a timeout). A role
// waiting on etcd — for the run spec, a generation — thus says every few
// seconds which endpoint fails instead of waiting silently. stop joins the
// checker.
func WatchReachability(ctx context.Context, cli *clientv3.Client, endpoints []string, period time.Duration, log *zap.Logger) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(period)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			for _, ep := range endpoints {
				if err := reach(ctx, cli, ep, period/2); err != nil && ctx.Err() == nil {
					log.Warn("etcd endpoint unreachable; check --etcd, that etcd runs there and that this host can reach it",
						zap.String("endpoint", ep), zap.Error(err))
				}
			}
		}
	})
	return func() {
		cancel()
		wg.Wait()
	}
}

// reach dials endpoint's host:port, then asks etcd its status, each within
// timeout.
func reach(ctx context.Context, cli *clientv3.Client, endpoint string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	hostport := endpoint
	if strings.Contains(endpoint, "://") {
		if u, err := url.Parse(endpoint); err == nil {
			hostport = u.Host
		}
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", hostport)
	if err != nil {
		return err
	}
	conn.Close()
	_, err = cli.Status(ctx, endpoint)
	return err
}
