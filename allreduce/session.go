package allreduce

import "slices"

// SessionKey identifies one generation of one run on the wire.
type SessionKey struct {
	RunID      string
	Generation uint64
}

// Session is an immutable membership generation: run id, generation, the
// ordered member addresses and this process's rank. A membership change builds
// a new Session; it never mutates an old one.
type Session struct {
	key     SessionKey
	members []string
	ids     []string // nil: no authentication
	rank    int
}

// NewSession returns the session described by cfg, or cfg's validation error.
func NewSession(cfg Config) (Session, error) {
	if err := cfg.Validate(); err != nil {
		return Session{}, err
	}
	return Session{
		key:     SessionKey{RunID: cfg.RunID, Generation: cfg.Generation},
		members: slices.Clone(cfg.Members),
		ids:     slices.Clone(cfg.Identities),
		rank:    cfg.Rank,
	}, nil
}

// Identity returns rank r's identity, or "" when the session has none.
func (s Session) Identity(r int) string {
	if s.ids == nil || r < 0 || r >= len(s.ids) {
		return ""
	}
	return s.ids[r]
}

// Key returns (run id, generation).
func (s Session) Key() SessionKey { return s.key }

// RunID returns the run id.
func (s Session) RunID() string { return s.key.RunID }

// Generation returns the membership generation.
func (s Session) Generation() uint64 { return s.key.Generation }

// Size returns the number of ranks.
func (s Session) Size() int { return len(s.members) }

// Rank returns this process's rank.
func (s Session) Rank() int { return s.rank }

// Members returns a copy of the ordered member addresses.
func (s Session) Members() []string { return slices.Clone(s.members) }

// Addr returns the address of rank r.
func (s Session) Addr(r int) string { return s.members[r] }

// Left returns the rank this rank receives from.
func (s Session) Left() int { return Left(len(s.members), s.rank) }

// Right returns the rank this rank sends to.
func (s Session) Right() int { return Right(len(s.members), s.rank) }
