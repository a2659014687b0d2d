package main

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/ringtrain/ringtrain/cluster"
	"github.com/ringtrain/ringtrain/train"
)

func TestStatusCommand(t *testing.T) {
	etcd, err := cluster.StartEtcd(cluster.EtcdConfig{Dir: t.TempDir(), ListenClientURLs: "http://127.0.0.1:0",
		ListenPeerURLs: "http://127.0.0.1:0", Fast: true})
	if err != nil {
		t.Fatal(err)
	}
	defer etcd.Close()
	cli, err := clientv3.New(cluster.EtcdClientConfig(etcd.Endpoints(), nil))
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c := cluster.NewClient(cli, "r1", nil)
	ep := etcd.Endpoints()[0]

	status := func(args ...string) (string, int) {
		var out, errb bytes.Buffer
		code := mainErr(append([]string{"status", "--etcd", ep, "--run", "r1"}, args...), &out, &errb)
		return out.String() + errb.String(), code
	}
	out, code := status()
	if code != 0 || !strings.Contains(out, "none (no coordinator") || !strings.Contains(out, "(no workers)") {
		t.Fatalf("empty run: exit %d\n%s", code, out)
	}

	spec := cluster.RunSpec{Config: train.DefaultConfig().Spec, MinWorkers: 1}
	if _, err := c.PutSpecIfAbsent(ctx, spec); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"w1", "w2", "w3"} {
		r, err := c.Register(ctx, cluster.WorkerInfo{ID: id, Addr: "10.0.0.1:" + id, Started: time.Now()}, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
	}
	put := func(key string, v any) {
		if _, err := cli.Put(ctx, cluster.Key("r1", key), cluster.Marshal(v)); err != nil {
			t.Fatal(err)
		}
	}
	put(cluster.KeyGeneration, cluster.Generation{Gen: 4, Reason: "joined w2",
		Members: []cluster.Member{{ID: "w2", Addr: "10.0.0.1:w2"}, {ID: "w1", Addr: "10.0.0.1:w1"}, {ID: "w9", Addr: "x"}}})
	if err := c.PublishProgress(ctx, "w2", cluster.Progress{Gen: 4, Step: 50, TotalSteps: 200, Epoch: 1, Loss: 0.25, SamplesPerSec: 1234, Time: time.Now()}); err != nil {
		t.Fatal(err)
	}
	// The checkpoint is named relative to the workers' checkpoint root.
	if _, err := c.PublishCheckpoint(ctx, cluster.CheckpointRef{Step: 40, Dir: "step-00000040", Gen: 4, Time: time.Now(), ParamsSHA256: "5e1f00d"}); err != nil {
		t.Fatal(err)
	}
	out, code = status()
	t.Logf("ringtrain status:\n%s", out)
	for _, want := range []string{"ring w2 → w1 → w9", "50 / 200 (25.0%)", "0.2500", "1234", "step 40 in step-00000040", "params_sha256", "5e1f00d",
		"w3 ", "standby", "rank 0", "gone", "done", "no"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Fatalf("status lacks %q (exit %d):\n%s", want, code, out)
		}
	}
	// A pointer written by the previous release holds the writer's path:
	// shown relative to the checkpoint root too.
	put(cluster.KeyCheckpoint, cluster.CheckpointRef{Step: 45, Dir: "/old/machine/step-00000045", Gen: 4, Time: time.Now()})
	if out, code = status(); code != 0 || !strings.Contains(out, "step 45 in step-00000045") {
		t.Fatalf("status of an old-format checkpoint (exit %d):\n%s", code, out)
	}
	if _, err := c.MarkDone(ctx, train.Summary{Step: 200, TestAccuracy: 0.98}); err != nil {
		t.Fatal(err)
	}
	out, code = status("--json")
	var rep statusReport
	if code != 0 || json.Unmarshal([]byte(out), &rep) != nil {
		t.Fatalf("--json: exit %d\n%s", code, out)
	}
	if rep.Generation.Gen != 4 || len(rep.Members) != 4 || rep.Done == nil || rep.Done.Step != 200 || rep.Checkpoint.Step != 45 ||
		rep.CheckpointPath != "step-00000045" {
		t.Fatalf("--json report %+v", rep)
	}
}

func TestCoordinatorAndEtcdFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"coordinator", "--min-workers", "0"}, 2, "--min-workers 0"},
		{[]string{"coordinator", "--max-workers", "1", "--min-workers", "2"}, 2, "--max-workers 1"},
		{[]string{"coordinator", "--lr", "-1"}, 2, "--lr"},
		{[]string{"coordinator", "--etcd", ""}, 2, "--etcd"},
		{[]string{"coordinator", "--bogus"}, 2, "bogus"},
		{[]string{"coordinator", "--help"}, 0, "-hash-every"},
		{[]string{"coordinator", "--etcd", "127.0.0.1:1"}, 2, "--gossip-key-file is not set"},
		{[]string{"coordinator", "--etcd", "127.0.0.1:1", "--insecure", "--gossip-key-file", "/nonexistent/gossip.key"}, 2, "/nonexistent/gossip.key"},
		{[]string{"worker", "--etcd", "127.0.0.1:1"}, 2, "--gossip-key-file is not set"},
		{[]string{"worker", "--etcd", "127.0.0.1:1", "--gossip-key-file", "/nonexistent/gossip.key"}, 2, "/nonexistent/gossip.key"},
		{[]string{"etcd", "--initial-cluster-state", "maybe"}, 2, "--initial-cluster-state"},
		{[]string{"etcd", "--listen-client-urls", "nope"}, 1, "listen-client-urls"},
		{[]string{"status", "--etcd", ""}, 2, "--etcd"},
	} {
		var out, errb bytes.Buffer
		code := mainErr(tc.args, &out, &errb)
		if code != tc.code || !strings.Contains(out.String()+errb.String(), tc.want) {
			t.Errorf("%v: exit %d, want %d with %q:\n%s%s", tc.args, code, tc.code, tc.want, out.String(), errb.String())
		}
	}
}

// status reaches a TLS etcd with auth on (as compose and Kubernetes run it)
// with a reader's certificate from --tls-dir; without one, or with files
// that are not there, it says which flag and exits 2.
func TestStatusOverTLS(t *testing.T) {
	const run = "r1"
	dir, certs := t.TempDir(), t.TempDir()
	if err := localCerts(certs, run, 1); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	etcd, err := startLocalEtcd(ctx, dir, certs, run, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer etcd.Close()
	ep := etcd.Endpoints()[0]
	if !strings.HasPrefix(ep, "https://") {
		t.Fatalf("local etcd endpoint %q is not TLS", ep)
	}
	status := func(args ...string) (string, int) {
		var out, errb bytes.Buffer
		code := mainErr(append([]string{"status", "--run", run, "--timeout", "5s"}, args...), &out, &errb)
		return out.String() + errb.String(), code
	}
	reader := filepath.Join(certs, "client", localClientID)
	if out, code := status("--etcd", ep, "--tls-dir", reader); code != 0 || !strings.Contains(out, "none (no coordinator") {
		t.Fatalf("status with the reader's certificate: exit %d\n%s", code, out)
	}
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"--etcd", ep}, []string{"--etcd " + ep, "--tls-dir"}},
		{[]string{"--etcd", ep, "--tls-dir", filepath.Join(certs, "nope")}, []string{"--tls-dir", "nope", "ringtrain certs"}},
		{[]string{"--etcd", ep, "--tls-cert", filepath.Join(reader, "cert.pem")}, []string{"--tls-key is not set"}},
		{[]string{"--etcd", strings.TrimPrefix(ep, "https://"), "--tls-dir", reader}, []string{"plaintext", "https://"}},
	} {
		out, code := status(tc.args...)
		if code != 2 || strings.Count(strings.TrimSpace(out), "\n") != 0 {
			t.Errorf("status %v: exit %d, want 2 and one line:\n%s", tc.args, code, out)
		}
		for _, w := range tc.want {
			if !strings.Contains(out, w) {
				t.Errorf("status %v: %q does not say %q", tc.args, out, w)
			}
		}
	}
	// A plaintext client gets nothing from it.
	if out, code := status("--etcd", "http://"+strings.TrimPrefix(ep, "https://"), "--timeout", "2s"); code == 0 {
		t.Fatalf("status in plaintext against the TLS etcd succeeded:\n%s", out)
	}
}
