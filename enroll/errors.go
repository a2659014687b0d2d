package enroll

import "errors"

var (
	// ErrBadToken: a first enrollment with a wrong or missing token.
	ErrBadToken = errors.New("enroll: bad bootstrap token")
	// ErrTooManyBadTokens: the caller's address sent MaxBadTokens wrong
	// tokens within BadTokenWindow; its token enrollments wait that long.
	ErrTooManyBadTokens = errors.New("enroll: too many wrong bootstrap tokens")
	// ErrBadID: a worker ID that cannot be a certificate's identity.
	ErrBadID = errors.New("enroll: invalid worker ID")
	// ErrLive: a live worker holds the ID asked for.
	ErrLive = errors.New("enroll: a live worker holds this ID")
	// ErrNotLeader: the coordinator asked does not lead.
	ErrNotLeader = errors.New("enroll: not the leading coordinator")
	// ErrNoLeader: no coordinator leads, or the leader advertises no address.
	ErrNoLeader = errors.New("enroll: no leading coordinator to enroll with")
)
