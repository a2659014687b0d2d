// Package testenv is what tests ask of the machine they run on.
package testenv

import (
	"os"
	"testing"
)

// Need lets t go on when have is true. Otherwise it skips t, saying what is
// missing (a CPU feature, a library's build) — except under CI (the CI
// variable set), whose machine kind has all of it: there a missing piece is
// a fault of the machine or the build, and t fails instead, so no test goes
// unrun unnoticed.
func Need(t testing.TB, have bool, what string) {
	t.Helper()
	if have {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("CI's machine must have this: %s", what)
		return
	}
	t.Skip(what)
}
