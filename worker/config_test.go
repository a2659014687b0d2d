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
