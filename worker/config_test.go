package worker

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/ringtrain/ringtrain/cluster"
	"github.com/ringtrain/ringtrain/internal/usage"
)

// A worker without the run's gossip key is refused, naming the flag and the
// fix, unless Insecure; a key file that cannot be read is refused by New.
func TestConfigGossipKey(t *testing.T) {
	c := DefaultConfig()
	c.Etcd = []string{"127.0.0.1:2379"}
	err := c.Validate()
	if !usage.Is(err) || !strings.Contains(err.Error(), "--gossip-key-file") || !strings.Contains(err.Error(), "--insecure") {
		t.Fatalf("no key: %v, want a usage error naming --gossip-key-file and --insecure", err)
	}
	c.Insecure = true
	if err := c.Validate(); err != nil {
		t.Fatalf("Insecure: %v", err)
	}
	c.Insecure = false
	c.GossipKey = make([]byte, 12)
	if err := c.Validate(); !usage.Is(err) {
		t.Fatalf("12-byte key: %v", err)
	}
	c.GossipKey = cluster.NewGossipKey()
	if err := c.Validate(); err != nil {
		t.Fatalf("with a key: %v", err)
	}
	c.GossipKey = nil
	c.GossipKeyFile = filepath.Join(t.TempDir(), "gossip.key")
	if _, err := New(c); !usage.Is(err) || !strings.Contains(err.Error(), c.GossipKeyFile) {
		t.Fatalf("missing key file: %v, want a usage error naming it", err)
	}
	if _, err := cluster.WriteGossipKeyFile(c.GossipKeyFile); err != nil {
		t.Fatal(err)
	}
	c.ID, c.TLS = "w1", testCerts(t, c.Run, "w1")["w1"]
	w, err := New(c)
	if err != nil || len(w.cfg.GossipKey) != cluster.GossipKeySize {
		t.Fatalf("New with a key file: %v (key %d bytes)", err, len(w.cfg.GossipKey))
	}
}

// Every address flag is checked before anything starts: a bad one is one
// usage error naming the flag, the value and an example.
func TestConfigAddresses(t *testing.T) {
	for _, tc := range []struct {
		set  func(*Config)
		want []string
	}{
		{func(c *Config) { c.GossipListen = "127.0.0.1:99999" }, []string{"--gossip-listen", "99999", "65535", ":7946"}},
		{func(c *Config) { c.GossipListen = "abc" }, []string{"--gossip-listen", `"abc"`, "host:port"}},
		{func(c *Config) { c.Listen = ":http-ish" }, []string{"--listen", "http-ish"}},
		{func(c *Config) { c.Listen = "" }, []string{"--listen", "empty"}},
		{func(c *Config) { c.Advertise = "10.0.0.5" }, []string{"--advertise", "10.0.0.5"}},
		{func(c *Config) { c.GossipAdvertise = "a b:7946" }, []string{"--gossip-advertise", "a b"}},
		{func(c *Config) { c.HTTPAddr = "127.0.0.1:-1" }, []string{"--http-addr", "-1"}},
	} {
		c := DefaultConfig()
		c.Etcd, c.Insecure = []string{"127.0.0.1:2379"}, true
		tc.set(&c)
		err := c.Validate()
		if !usage.Is(err) {
			t.Errorf("%v: %v, want a usage error", tc.want, err)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%q does not name %q", err, w)
			}
		}
	}
	c := DefaultConfig()
	c.Etcd, c.Insecure, c.HTTPAddr, c.Advertise = []string{"127.0.0.1:2379"}, true, "", "[::1]:7070"
	if err := c.Validate(); err != nil {
		t.Errorf("valid addresses refused: %v", err)
	}
}
