package worker

import (
	"context"
	"fmt"
	"net"
	"os"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/ringtrain/ringtrain/cluster"
	"github.com/ringtrain/ringtrain/enroll"
	"github.com/ringtrain/ringtrain/internal/httpauth"
	"github.com/ringtrain/ringtrain/internal/pki"
	"github.com/ringtrain/ringtrain/internal/usage"
)

// enrolls reports whether the worker gets its certificate by enrolling: it
// has the run's CA and the bootstrap token, and no certificate of its own.
func (c Config) enrolls() bool {
	return c.TLS.Cert == "" && c.TLS.Key == "" && c.TLS.CA != "" && (c.EnrollTokenFile != "" || c.EnrollToken != "")
}

// enroll gets the worker's certificate from the leading coordinator into
// a private temporary directory, sets w.tls, and renews the certificate at
// half-life until the returned stop is called (which also removes the
// directory). ctx bounds the first enrollment only.
func (w *Worker) enroll(ctx context.Context) (stop func(), err error) {
	ca, err := os.ReadFile(w.cfg.TLS.CA)
	if err != nil {
		return nil, usage.Errorf("--tls-ca %q: %v; give the run's ca.pem (`ringtrain certs` writes it)", w.cfg.TLS.CA, err)
	}
	token := w.cfg.EnrollToken
	if token == "" {
		if token, err = httpauth.ReadTokenFile("--enroll-token-file", w.cfg.EnrollTokenFile); err != nil {
			return nil, err
		}
	}
	locate, closeLocator, err := w.enrollLocator()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "ringtrain-tls-") // 0700: the key stays private
	if err != nil {
		closeLocator()
		return nil, fmt.Errorf("worker: %w", err)
	}
	cleanup := func() { closeLocator(); os.RemoveAll(dir) }
	c := enroll.NewClient(enroll.ClientConfig{Run: w.cfg.Run, ID: w.cfg.ID, CA: ca, Token: token, Locate: locate,
		Dir: dir, Logger: w.log})
	w.log.Info("enrolling for a certificate", zap.Strings("coordinators", w.cfg.EnrollAddrs))
	if err := c.Enroll(ctx); err != nil {
		cleanup()
		return nil, err
	}
	src, err := pki.NewSource(c.Files())
	if err != nil {
		cleanup()
		return nil, err
	}
	w.tls = src
	rctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); c.KeepRenewed(rctx, src) }()
	return func() { cancel(); <-done; cleanup() }, nil
}

// enrollLocator finds the coordinator to enroll with: the EnrollAddrs in
// turn, else the leader that etcd names (which needs an etcd this worker
// can read before it has a certificate).
func (w *Worker) enrollLocator() (enroll.Locator, func(), error) {
	if len(w.cfg.EnrollAddrs) > 0 {
		return enroll.ListLocator(w.cfg.EnrollAddrs), func() {}, nil
	}
	cli, err := clientv3.New(cluster.EtcdClientConfig(w.cfg.Etcd, w.log.Named("etcd")))
	if err != nil {
		return nil, nil, fmt.Errorf("worker: etcd %v: %w", w.cfg.Etcd, err)
	}
	return enroll.LeaderLocator(cluster.NewClient(cli, w.cfg.Run, w.log)), func() { cli.Close() }, nil
}

// serveHealth serves the ring transport's health service in plaintext on
// HealthAddr, and nothing else, for probes without a certificate; stop
// ends it. Without HealthAddr it does nothing.
func (w *Worker) serveHealth() (stop func(), err error) {
	if w.cfg.HealthAddr == "" {
		return func() {}, nil
	}
	lis, err := net.Listen("tcp", w.cfg.HealthAddr)
	if err != nil {
		return nil, usage.Errorf("--health-addr %q: %v", w.cfg.HealthAddr, err)
	}
	w.healthAddr = lis.Addr().String()
	srv := grpc.NewServer()
	healthpb.RegisterHealthServer(srv, w.tr.Health())
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(lis) }() //nolint:errcheck // returns on Stop
	return func() { srv.Stop(); <-done }, nil
}
