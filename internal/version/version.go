// Package version holds the build's identity, set by the linker (see the Makefile).
package version

import "fmt"

// Set with -ldflags "-X github.com/ringtrain/ringtrain/internal/version.Version=...".
var (
	Version = "dev"
	Commit  = "none"
	Date    = "unknown"
)

// String is the one-line form printed by `ringtrain version`.
func String() string {
	return fmt.Sprintf("ringtrain %s (commit %s, built %s)", Version, Commit, Date)
}
