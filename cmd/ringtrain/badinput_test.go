package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// badCase is one bad input: the command line (in dir, with env), what its
// one error line must name (the field, the value, the fix), the exit
// status, and optionally a setup that makes files in dir first.
type badCase struct {
	area  string // flags, config, data, checkpoint, etcd, network
	args  []string
	env   []string
	setup func(t *testing.T, dir string)
	want  []string
	code  int
	// wait, if set, runs the command this long and expects it still
	// running (it waits, as it should) with want in its output by then.
	wait time.Duration
}

// TestBadInputMatrix runs the binary on bad input of every kind: each must
// end with one clear line (or, for a wait, say what it waits on), the right
// exit status, and leave what was already saved — a checkpoint of an
// earlier run in the same directory — byte for byte as it was.
func TestBadInputMatrix(t *testing.T) {
	if testing.Short() {
		t.Skip("real processes")
	}
	saved := t.TempDir() // an earlier run's checkpoints, shared by every case
	if out, err := exec.Command(ringtrainBin, "train", "--layers", "784-16-10", "--steps", "10", "--checkpoint-dir", saved).CombinedOutput(); err != nil {
		t.Fatalf("the earlier run: %v\n%s", err, out)
	}
	before := dirDigest(t, saved)
	ck := filepath.Join(saved, "step-00000010")
	inUse, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer inUse.Close()
	busy := inUse.Addr().String()
	deadEtcd := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	write := func(name, body string) func(*testing.T, string) {
		return func(t *testing.T, dir string) {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	tiny := []string{"--layers", "784-16-10", "--steps", "3"}
	cases := []badCase{
		// Flags.
		{area: "flags", args: []string{"train", "--batch", "0"}, want: []string{"--batch 0", "positive"}, code: 2},
		{area: "flags", args: []string{"train", "--lr", "-0.1"}, want: []string{"--lr", "-0.1"}, code: 2},
		{area: "flags", args: []string{"train", "--layers", "784-0-10"}, want: []string{"--layers", "784-0-10"}, code: 2},
		{area: "flags", args: []string{"train", "--micro-batch", "0"}, want: []string{"--micro-batch 0", "e.g. --micro-batch"}, code: 2},
		{area: "flags", args: []string{"train", "--bucket-mib", "-1"}, want: []string{"--bucket-mib -1", "e.g. --bucket-mib"}, code: 2},
		{area: "flags", args: []string{"train", "--nonfinite", "ignore"}, want: []string{"--nonfinite", "ignore", "stop", "skip"}, code: 2},
		{area: "flags", args: []string{"train", "--optimizer", "rmsprop"}, want: []string{"rmsprop", "adam"}, code: 2},
		{area: "flags", args: []string{"train", "--layers", "100-10"}, want: []string{"--layers 100-10", "784 features", "make the first layer 784"}, code: 2},
		{area: "flags", args: []string{"local", "--workers", "0"}, want: []string{"--workers 0"}, code: 2},
		{area: "flags", args: []string{"bench", "train", "--workers", "3", "--global-batch", "256"}, want: []string{"--global-batch 256", "--workers 3"}, code: 2},
		{area: "flags", args: []string{"version"}, env: []string{"RINGTRAIN_GEMM_KERNEL=bogus"}, want: []string{"RINGTRAIN_GEMM_KERNEL", "bogus"}, code: 2},
		{area: "flags", args: []string{"version"}, env: []string{"RINGTRAIN_FIXED_KERNEL=fast"}, want: []string{"RINGTRAIN_FIXED_KERNEL", "\"fast\"", "use avx512 or off"}, code: 2},
		{area: "flags", args: []string{"worker", "--etcd", deadEtcd}, want: []string{"--gossip-key-file", "--insecure"}, code: 2},
		{area: "flags", args: []string{"worker", "--etcd", deadEtcd, "--insecure", "--id", "a/b"}, want: []string{"--id", "a/b", "e.g. --id worker-1"}, code: 2},
		// Config files.
		{area: "config", args: []string{"train", "--config", "missing.yaml"}, want: []string{"--config", "missing.yaml", "no such file"}, code: 2},
		{area: "config", args: []string{"train", "--config", "c.yaml"}, setup: write("c.yaml", "batchsize: 64\n"), want: []string{"c.yaml", "batchsize"}, code: 2},
		{area: "config", args: []string{"train", "--config", "c.yaml"}, setup: write("c.yaml", "batch: [64\n"), want: []string{"c.yaml"}, code: 2},
		{area: "config", args: []string{"train", "--config", "c.yaml"}, setup: write("c.yaml", "batch: -1\n"), want: []string{"--batch -1", "positive"}, code: 2},
		{area: "config", args: []string{"train", "--config", "c.yaml"}, setup: write("c.yaml", "lr: fast\n"), want: []string{"c.yaml", "lr", "fast"}, code: 2},
		// Data files.
		{area: "data", args: []string{"train", "--data", "csv:nope.csv,nope2.csv"}, want: []string{"--data", "nope.csv", "no such file"}, code: 2},
		{area: "data", args: append([]string{"train", "--data", "csv:a.csv,a.csv"}, "--layers", "2-4-2", "--steps", "3"),
			setup: write("a.csv", "x,y,label\n1,2,0\nabc,4,1\n"), want: []string{"--data", "a.csv", "abc"}, code: 2},
		{area: "data", args: append([]string{"train", "--data", "csv:a.csv,a.csv"}, "--layers", "2-4-2", "--steps", "3"),
			setup: write("a.csv", "x,y,label\n1,2,0\n3,4,1.5\n"), want: []string{"--data", "a.csv", "1.5", "integer label"}, code: 2},
		{area: "data", args: append([]string{"train", "--data", "idx"}, tiny...), setup: func(t *testing.T, dir string) {
			os.Mkdir(filepath.Join(dir, "idx"), 0o755)
		}, want: []string{"idx"}, code: 2},
		{area: "data", args: append([]string{"train", "--data", "idx"}, tiny...), setup: func(t *testing.T, dir string) {
			os.Mkdir(filepath.Join(dir, "idx"), 0o755)
			for _, n := range []string{"train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"} {
				os.WriteFile(filepath.Join(dir, "idx", n), []byte{0, 0, 8, 3, 0, 0, 0, 9}, 0o644)
			}
		}, want: []string{"idx"}, code: 2},
		// Checkpoints.
		{area: "checkpoint", args: []string{"eval", "--checkpoint", "ck"}, setup: copyCorrupt(ck, "model.safetensors"), want: []string{"model.safetensors", "corrupt"}, code: 1},
		{area: "checkpoint", args: []string{"eval", "--checkpoint", "ck"}, setup: copyCorrupt(ck, "manifest.json"), want: []string{"manifest.json"}, code: 1},
		{area: "checkpoint", args: []string{"eval", "--checkpoint", "empty"}, setup: func(t *testing.T, dir string) {
			os.Mkdir(filepath.Join(dir, "empty"), 0o755)
		}, want: []string{"empty", "manifest.json is missing"}, code: 1},
		{area: "checkpoint", args: append([]string{"train", "--init", "nope.safetensors"}, tiny...), want: []string{"--init", "nope.safetensors"}, code: 2},
		{area: "checkpoint", args: []string{"train", "--layers", "784-32-10", "--steps", "20", "--checkpoint-dir", saved},
			want: []string{"--layers", "784-16-10", "784-32-10"}, code: 2},
		{area: "checkpoint", args: append([]string{"train", "--checkpoint-dir", "f/sub"}, tiny...), setup: write("f", ""), want: []string{"--checkpoint-dir", "f/sub"}, code: 2},
		// etcd.
		{area: "etcd", args: []string{"worker"}, want: []string{"--etcd"}, code: 2},
		{area: "etcd", args: []string{"worker", "--etcd", deadEtcd, "--insecure", "--listen", "127.0.0.1:0", "--gossip-listen", "127.0.0.1:0", "--id", "w1"},
			want: []string{"etcd endpoint unreachable", deadEtcd, "connection refused"}, wait: 12 * time.Second},
		{area: "etcd", args: []string{"coordinator", "--etcd", deadEtcd, "--insecure", "--listen", "127.0.0.1:0", "--gossip-listen", "127.0.0.1:0", "--http-addr", ""},
			want: []string{"etcd endpoint unreachable", deadEtcd, "connection refused"}, wait: 12 * time.Second},
		// Network.
		{area: "network", args: []string{"worker", "--etcd", deadEtcd, "--insecure", "--listen", busy}, want: []string{"--listen", busy, "in use"}, code: 2},
		{area: "network", args: []string{"worker", "--etcd", deadEtcd, "--insecure", "--gossip-listen", "127.0.0.1:99999"}, want: []string{"--gossip-listen", "99999", "65535"}, code: 2},
		{area: "network", args: []string{"worker", "--etcd", deadEtcd, "--insecure", "--listen", "nohost"}, want: []string{"--listen", "nohost", "host:port"}, code: 2},
		{area: "network", args: []string{"coordinator", "--etcd", deadEtcd, "--insecure", "--http-addr", "127.0.0.1:70000"}, want: []string{"--http-addr", "70000"}, code: 2},
		{area: "network", args: []string{"coordinator", "--etcd", deadEtcd, "--insecure", "--gossip-advertise", "10.0.0.2"}, want: []string{"--gossip-advertise", "10.0.0.2"}, code: 2},
	}
	if len(cases) < 30 {
		t.Fatalf("%d cases; the matrix has at least 30", len(cases))
	}
	for i, tc := range cases {
		name := fmt.Sprintf("%02d-%s-%s", i, tc.area, strings.Join(tc.args, "_"))
		if len(name) > 80 {
			name = name[:80]
		}
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			if tc.setup != nil {
				tc.setup(t, dir)
			}
			runBadCase(t, dir, tc)
		})
	}
	if after := dirDigest(t, saved); after != before {
		t.Fatalf("the earlier run's checkpoints changed")
	}
}

func runBadCase(t *testing.T, dir string, tc badCase) {
	t.Helper()
	limit := 60 * time.Second
	if tc.wait > 0 {
		limit = tc.wait
	}
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, ringtrainBin, tc.args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), tc.env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	errs := stderr.String()
	if tc.wait > 0 {
		if ctx.Err() == nil {
			t.Fatalf("exited (%v) instead of waiting; stderr:\n%s", err, errs)
		}
		for _, w := range tc.want {
			if !strings.Contains(errs, w) {
				t.Fatalf("after %v its output does not say %q:\n%s", tc.wait, w, errs)
			}
		}
		return
	}
	code := cmd.ProcessState.ExitCode()
	last := finalLine(errs)
	if code != tc.code {
		t.Fatalf("exit %d, want %d; stderr:\n%s", code, tc.code, errs)
	}
	if !strings.HasPrefix(last, "ringtrain ") {
		t.Fatalf("the last line %q is not the command's one error line", last)
	}
	for _, w := range tc.want {
		if !strings.Contains(last, w) {
			t.Fatalf("the error line %q does not name %q", last, w)
		}
	}
}

// finalLine is the last non-empty line of s.
func finalLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// copyCorrupt copies checkpoint src to dir/ck and flips a byte of file.
func copyCorrupt(src, file string) func(*testing.T, string) {
	return func(t *testing.T, dir string) {
		dst := filepath.Join(dir, "ck")
		if err := os.CopyFS(dst, os.DirFS(src)); err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dst, file)
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		b[len(b)/2] ^= 0x20
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// dirDigest hashes every file's path and contents under root.
func dirDigest(t *testing.T, root string) [32]byte {
	t.Helper()
	h := sha256.New()
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%s %d\n", p, len(b))
		h.Write(b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	return sum
}
