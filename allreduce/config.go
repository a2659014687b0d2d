package allreduce

import (
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"
)

const (
	// DefaultPeerTimeout bounds the wait for any single chunk from a peer.
	DefaultPeerTimeout = 5 * time.Second
	// DefaultChunkBytes is the largest message payload; measured on loopback
	// gRPC (see the package benchmarks), 512 KiB to 1 MiB are equally good.
	DefaultChunkBytes = 512 << 10
	// MaxChunkBytes bounds ChunkBytes (and so the largest message).
	MaxChunkBytes = 16 << 20
	// minChunkBytes keeps messages from degenerating into per-float traffic.
	minChunkBytes = 4 << 10
)

// Config describes one generation of a ring as seen by one rank.
type Config struct {
	// RunID names the training run; traffic from another run is rejected.
	RunID string
	// Generation numbers the membership; a new member list gets a higher one.
	// Traffic from an older generation is rejected.
	Generation uint64
	// Members are the peers' transport addresses (host:port) in rank order;
	// rank = index. Every rank must pass the same list.
	Members []string
	// Rank is this process's index in Members.
	Rank int
	// Identities, when set, are the members' authenticated identities in
	// rank order (e.g. "worker:w1"; see GRPCTransport's WithTLS): a rank
	// accepts its left neighbour's stream only from a peer that proved
	// Identities[left], and connects only to a right neighbour that proves
	// Identities[right]. A ring without Identities refuses authenticated
	// streams, and one with Identities refuses unauthenticated ones, so a
	// mismatched setup fails closed. Every rank must pass the same list.
	Identities []string
	// PeerTimeout bounds the wait for any single chunk from (or to) a peer.
	// It must exceed the usual skew between ranks' arrivals at a collective.
	// Zero means DefaultPeerTimeout.
	PeerTimeout time.Duration
	// ConnectTimeout bounds NewRing's connection to the right neighbour
	// (including waiting for it to build the same generation). Zero means
	// PeerTimeout.
	ConnectTimeout time.Duration
	// ChunkBytes is the largest payload of one message, rounded down to a
	// multiple of 4; a message carries whole elements only (AllReduceInt64's
	// parts hold at most ChunkBytes/8 int64s). Zero means DefaultChunkBytes.
	ChunkBytes int
	// Logger receives the ring's events; nil means zap.NewNop().
	Logger *zap.Logger
}

// DefaultConfig returns a Config with the production timeouts; set RunID,
// Generation, Members and Rank.
func DefaultConfig() Config {
	return Config{PeerTimeout: DefaultPeerTimeout, ChunkBytes: DefaultChunkBytes, Logger: zap.NewNop()}
}

// DefaultLocalConfig returns a Config for tests on one machine: fast timeouts.
func DefaultLocalConfig() Config {
	c := DefaultConfig()
	c.PeerTimeout = 500 * time.Millisecond
	return c
}

// withDefaults fills the zero fields.
func (c Config) withDefaults() Config {
	if c.PeerTimeout == 0 {
		c.PeerTimeout = DefaultPeerTimeout
	}
	if c.ConnectTimeout == 0 {
		c.ConnectTimeout = c.PeerTimeout
	}
	if c.ChunkBytes == 0 {
		c.ChunkBytes = DefaultChunkBytes
	}
	c.ChunkBytes &^= 3
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	return c
}

// Validate reports what is wrong with c (after defaults are applied).
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	if c.RunID == "" {
		errs = append(errs, errors.New("RunID is empty; set it to the training run's id"))
	}
	if len(c.Members) == 0 {
		errs = append(errs, errors.New("Members is empty; list every rank's address in rank order"))
	}
	seen := make(map[string]int, len(c.Members))
	for i, m := range c.Members {
		if m == "" {
			errs = append(errs, fmt.Errorf("Members[%d] is empty", i))
			continue
		}
		if j, dup := seen[m]; dup {
			errs = append(errs, fmt.Errorf("Members[%d] = %q repeats Members[%d]; addresses must be unique", i, m, j))
		}
		seen[m] = i
	}
	if c.Rank < 0 || c.Rank >= len(c.Members) {
		errs = append(errs, fmt.Errorf("Rank %d is outside [0, %d); it indexes Members", c.Rank, len(c.Members)))
	}
	if c.Identities != nil {
		if len(c.Identities) != len(c.Members) {
			errs = append(errs, fmt.Errorf("Identities has %d entries for %d Members; give one per rank", len(c.Identities), len(c.Members)))
		}
		ids := make(map[string]int, len(c.Identities))
		for i, id := range c.Identities {
			if id == "" {
				errs = append(errs, fmt.Errorf("Identities[%d] is empty", i))
			} else if j, dup := ids[id]; dup {
				errs = append(errs, fmt.Errorf("Identities[%d] = %q repeats Identities[%d]; identities must be unique", i, id, j))
			}
			ids[id] = i
		}
	}
	if c.PeerTimeout < 0 || c.ConnectTimeout < 0 {
		errs = append(errs, fmt.Errorf("PeerTimeout %v and ConnectTimeout %v must not be negative", c.PeerTimeout, c.ConnectTimeout))
	}
	if c.ChunkBytes < minChunkBytes || c.ChunkBytes > MaxChunkBytes {
		errs = append(errs, fmt.Errorf("ChunkBytes %d is outside [%d, %d]", c.ChunkBytes, minChunkBytes, MaxChunkBytes))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("allreduce: invalid config: %w", err)
	}
	return nil
}
