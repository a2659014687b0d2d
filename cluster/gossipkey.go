package cluster

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"os"

	"github.com/ringtrain/ringtrain/internal/usage"
)

// The run's gossip key encrypts and authenticates every memberlist message
// (AES-GCM, memberlist's keyring): a member without it can neither join nor
// inject a message the keyed members act on.
//
// A key file holds 32 random bytes as they are, or the hex or standard
// base64 text of a 16-, 24- or 32-byte key (AES-128, -192, -256), with
// surrounding whitespace ignored. Text is tried first: 32 bytes that decode
// as hex are a 16-byte key. `head -c 32 /dev/urandom > gossip.key` and
// `openssl rand -hex 32 > gossip.key` both make one.

// GossipKeySize is the size of the key NewGossipKey makes (AES-256).
const GossipKeySize = 32

// NewGossipKey is a fresh random key.
func NewGossipKey() []byte {
	k := make([]byte, GossipKeySize)
	rand.Read(k) //nolint:errcheck // crypto/rand.Read never fails (Go 1.24+)
	return k
}

// WriteGossipKeyFile writes a fresh key to path as hex (mode 0600) and
// returns it.
func WriteGossipKeyFile(path string) ([]byte, error) {
	k := NewGossipKey()
	if err := os.WriteFile(path, []byte(hex.EncodeToString(k)+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("cluster: gossip key: %w", err)
	}
	return k, nil
}

// ReadGossipKeyFile reads a key file (the format is above). A missing file
// or one that holds no key is a usage error naming flag, the file and the fix.
func ReadGossipKeyFile(flag, path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, usage.Errorf("%s %q: %v; give a file with the run's gossip key, e.g. made by `openssl rand -hex 32 > gossip.key`", flag, path, err)
	}
	k, err := ParseGossipKey(b)
	if err != nil {
		return nil, usage.Errorf("%s %q: %v", flag, path, err)
	}
	return k, nil
}

// GossipKeyOr is key if it is set, else the key read from path (flag names
// it in errors), else nil: a configuration's key wins over its key file.
func GossipKeyOr(key []byte, flag, path string) ([]byte, error) {
	if len(key) > 0 || path == "" {
		return key, nil
	}
	return ReadGossipKeyFile(flag, path)
}

// ParseGossipKey decodes a key file's contents.
func ParseGossipKey(b []byte) ([]byte, error) {
	text := bytes.TrimSpace(b)
	if k, err := hex.DecodeString(string(text)); err == nil && validKeyLen(len(k)) {
		return k, nil
	}
	if k, err := base64.StdEncoding.DecodeString(string(text)); err == nil && validKeyLen(len(k)) {
		return k, nil
	}
	if len(b) == GossipKeySize {
		return bytes.Clone(b), nil
	}
	return nil, fmt.Errorf("holds %d bytes, which are neither 32 raw bytes nor the hex or base64 of a 16-, 24- or 32-byte key; "+
		"write one with `openssl rand -hex 32` or `head -c 32 /dev/urandom`", len(b))
}

func validKeyLen(n int) bool { return n == 16 || n == 24 || n == 32 }

// CheckGossipKey is the rule every role applies to its key: a key of 16, 24
// or 32 bytes, or none only when insecure is set. The error is a usage error
// naming the flag and the fix.
func CheckGossipKey(key []byte, insecure bool) error {
	switch {
	case len(key) == 0 && !insecure:
		return usage.New("--gossip-key-file is not set: gossip must be encrypted with the run's key; " +
			"give every coordinator and worker the same key file (e.g. `openssl rand -hex 32 > gossip.key`, then --gossip-key-file gossip.key), " +
			"or pass --insecure on a trusted network")
	case len(key) != 0 && !validKeyLen(len(key)):
		return usage.Errorf("the gossip key has %d bytes; it must have 16, 24 or 32", len(key))
	}
	return nil
}
