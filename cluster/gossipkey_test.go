package cluster

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/ringtrain/ringtrain/internal/usage"
)

func TestParseGossipKey(t *testing.T) {
	raw := bytes.Repeat([]byte{0xfe}, 32) // not hex, not base64
	k16 := bytes.Repeat([]byte{7}, 16)
	k24 := bytes.Repeat([]byte{9}, 24)
	for _, tc := range []struct {
		name string
		in   []byte
		want []byte
		err  string
	}{
		{"raw 32 bytes", raw, raw, ""},
		{"hex of 32", []byte(hex.EncodeToString(raw) + "\n"), raw, ""},
		{"hex of 16 is 32 bytes of text", []byte(hex.EncodeToString(k16)), k16, ""},
		{"base64 of 24", []byte("  " + base64.StdEncoding.EncodeToString(k24) + "\n"), k24, ""},
		{"hex of 20", []byte(hex.EncodeToString(raw[:20])), nil, "holds 40 bytes"},
		{"empty", nil, nil, "holds 0 bytes"},
		{"raw 31 bytes", raw[:31], nil, "holds 31 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseGossipKey(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want one containing %q", err, tc.err)
				}
				return
			}
			if err != nil || !bytes.Equal(got, tc.want) {
				t.Fatalf("got %x, %v; want %x", got, err, tc.want)
			}
		})
	}
}

func TestGossipKeyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gossip.key")
	k, err := WriteGossipKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("stat %v %v, want mode 0600", fi.Mode(), err)
	}
	got, err := ReadGossipKeyFile("--gossip-key-file", path)
	if err != nil || !bytes.Equal(got, k) || len(k) != GossipKeySize {
		t.Fatalf("read %x %v, wrote %x", got, err, k)
	}
	_, err = ReadGossipKeyFile("--gossip-key-file", filepath.Join(t.TempDir(), "none"))
	if !usage.Is(err) || !strings.Contains(err.Error(), "--gossip-key-file") {
		t.Fatalf("missing file: %v, want a usage error naming the flag", err)
	}
}

func TestCheckGossipKey(t *testing.T) {
	err := CheckGossipKey(nil, false)
	if !usage.Is(err) || !strings.Contains(err.Error(), "--gossip-key-file") || !strings.Contains(err.Error(), "--insecure") {
		t.Fatalf("no key: %v, want a usage error naming --gossip-key-file and --insecure", err)
	}
	if err := CheckGossipKey(nil, true); err != nil {
		t.Fatal(err)
	}
	if err := CheckGossipKey(make([]byte, 20), true); !usage.Is(err) {
		t.Fatalf("20-byte key: %v", err)
	}
	if err := CheckGossipKey(make([]byte, 16), false); err != nil {
		t.Fatal(err)
	}
}

// An outsider, without the key or with another one, can neither join the
// keyed members nor reach them: its messages are dropped, so their member
// lists never contain it and no event names it.
func TestGossipWithoutTheKeyIsIgnored(t *testing.T) {
	key := NewGossipKey()
	gs := startKeyedGossips(t, 2, key)
	for name, k := range map[string][]byte{"plain": nil, "otherkey": NewGossipKey()} {
		out, err := NewGossip(GossipConfig{Name: name, BindAddr: "127.0.0.1", Fast: true, SecretKey: k,
			Logger: zaptest.NewLogger(t, zaptest.Level(zap.ErrorLevel))})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { out.Shutdown() })
		if n, err := out.Join([]string{gs[0].Addr(), gs[1].Addr()}); err == nil || n != 0 {
			t.Errorf("%s joined %d keyed members (err %v), want none", name, n, err)
		}
	}
	// Long enough for many probe and gossip rounds (200 ms / 50 ms).
	deadline := time.After(2 * time.Second)
	for {
		select {
		case ev := <-gs[0].Events():
			if ev.Name != "g0" && ev.Name != "g1" {
				t.Fatalf("g0 got %v about an outsider", ev)
			}
		case ev := <-gs[1].Events():
			if ev.Name != "g0" && ev.Name != "g1" {
				t.Fatalf("g1 got %v about an outsider", ev)
			}
		case <-deadline:
			for _, g := range gs {
				if a := g.Alive(); len(a) != 2 || !a["g0"] || !a["g1"] {
					t.Fatalf("%s sees %v, want only g0 and g1", g.Name(), a)
				}
			}
			return
		}
	}
}

// A member with the key (a copy of it) is admitted: the outsiders above are
// refused for the key alone.
func TestGossipWithTheKeyJoins(t *testing.T) {
	key := NewGossipKey()
	gs := startKeyedGossips(t, 2, key)
	g, err := NewGossip(GossipConfig{Name: "g2", BindAddr: "127.0.0.1", Fast: true, SecretKey: bytes.Clone(key)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	if n, err := g.Join([]string{gs[0].Addr()}); err != nil || n != 1 {
		t.Fatalf("join: %d, %v", n, err)
	}
	waitMember(t, gs[1], "g2", 5*time.Second, MemberJoin)
}
