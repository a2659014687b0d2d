package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/allreduce"
	"github.com/ringtrain/ringtrain/cluster"
	"github.com/ringtrain/ringtrain/internal/pki"
)

// rogueEnv tells the test binary, started again as a rogue process, the
// ring port to attack: ADDR,RUN,GENERATION,FROM,TO.
const rogueEnv = "RINGTRAIN_TEST_ROGUE"

// rogue is the test binary started again by TestRingRefusesStrangers (see
// TestMain): a process without a certificate that tries a worker's ring
// port, in TLS without a client certificate and in plaintext, and prints
// what each attempt got.
func rogue(spec string) error {
	var addr, run string
	var gen uint64
	var from, to int
	if _, err := fmt.Sscanf(strings.ReplaceAll(spec, ",", " "), "%s %s %d %d %d", &addr, &run, &gen, &from, &to); err != nil {
		return err
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	tr, err := allreduce.NewGRPCTransport(lis)
	if err != nil {
		return err
	}
	defer tr.Close()
	// TLS first: it is refused at once, while a plaintext gRPC client
	// retries until its deadline.
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 3 * time.Second}, "tcp", addr,
		&tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true, NextProtos: []string{"h2"}})
	if err == nil {
		c.SetDeadline(time.Now().Add(3 * time.Second))
		_, err = io.ReadFull(c, make([]byte, 1))
		c.Close()
	}
	fmt.Printf("tls without a certificate: %v\n", err)

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	_, err = tr.Connect(ctx, addr, allreduce.Hello{Key: allreduce.SessionKey{RunID: run, Generation: gen}, From: from, To: to})
	fmt.Printf("plaintext: %v\n", err)
	return nil
}

// A run's workers refuse a rogue process without a certificate at the
// handshake, a certificate of the run's CA that is no member's, and a
// member's certificate claiming another member's rank; the run goes on and
// ends with the undisturbed run's model.
func TestRingRefusesStrangers(t *testing.T) {
	if testing.Short() {
		t.Skip("real processes")
	}
	// Long enough (tens of seconds) that the workers outlive every attempt.
	args := []string{"--layers", "784-32-10", "--steps", "12000", "--checkpoint-every", "2000", "--min-workers", "2"}
	c := newCluster(t, args...)
	c.startCoordinator("coordinator-1")
	c.startWorkers(2)
	g := c.waitGeneration(30*time.Second, func(g cluster.Generation) bool { return len(g.Members) == 2 })
	c.waitStep(20, time.Minute)
	g = c.generation()
	victim := g.Rank("worker-1")
	left := (victim + len(g.Members) - 1) % len(g.Members)
	addr := g.Members[victim].Addr

	// A rogue process without a certificate.
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s,%s,%d,%d,%d", rogueEnv, addr, cluster.DefaultRun, g.Gen, left, victim))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("rogue process: %v\n%s", err, out)
	}
	for _, want := range []string{"plaintext: ", "tls without a certificate: remote error: tls: certificate required"} {
		line := ""
		for _, l := range strings.Split(string(out), "\n") {
			if strings.HasPrefix(l, strings.SplitN(want, ":", 2)[0]+":") {
				line = l
			}
		}
		if !strings.HasPrefix(line, want) || strings.HasSuffix(line, "<nil>") {
			t.Fatalf("rogue: %q; want a refusal %q\n%s", line, want, out)
		}
	}

	// A certificate of the run's CA that names no member, and a member's
	// certificate for another member's rank.
	mallory := c.tlsDir("mallory")
	member := pki.LeafDir(filepath.Join(c.dir, "certs"), pki.Worker(cluster.DefaultRun, "worker-1"))
	for _, tc := range []struct {
		dir, want string
		from      int
	}{
		{mallory, fmt.Sprintf(`peer "worker:mallory" claimed rank %d of generation %d`, left, g.Gen), left},
		{member, fmt.Sprintf(`peer "worker:worker-1" claimed rank %d of generation %d, which is "worker:%s"`, left, g.Gen, g.Members[left].ID), left},
	} {
		src, err := pki.NewSource(pki.DirFiles(tc.dir))
		if err != nil {
			t.Fatal(err)
		}
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		tr, err := allreduce.NewGRPCTransport(lis, allreduce.WithTLS(allreduce.TLS{Server: src.ServerConfig(), Client: src.ClientConfig(),
			Identify: func(c *x509.Certificate) (string, error) { id, err := pki.IdentityOf(c); return id.String(), err }}))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err = tr.Connect(ctx, addr, allreduce.Hello{Key: allreduce.SessionKey{RunID: cluster.DefaultRun, Generation: g.Gen},
			From: tc.from, To: victim, ToID: pki.Worker(cluster.DefaultRun, "worker-1").String()})
		cancel()
		tr.Close()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			if cur := c.generation(); cur.Gen != g.Gen {
				t.Logf("the generation moved on (%d → %d) during the attempt: %v", g.Gen, cur.Gen, err)
				continue
			}
			t.Fatalf("%s: %v; want a refusal with %q", tc.dir, err, tc.want)
		}
	}

	sum := c.waitDone(3 * time.Minute)
	if sum.Workers != 2 {
		t.Fatalf("the run ended with %d workers, want 2 (summary %+v)", sum.Workers, sum)
	}
	c.checkExact(sum)
}
