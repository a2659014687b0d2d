// Package transcript runs the transcript tests of ringtrain's state machines
// (coordinator.Core, worker.Core): a testdata file holds inputs, one a line,
// each followed by the indented actions the machine returned. A test replays
// the inputs and compares its output with the file; with -rewrite it writes
// the output back, to be reviewed as a diff.
package transcript

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var rewrite = flag.Bool("rewrite", false, "rewrite testdata transcripts with the actual output")

// Run replays every file matching glob through replay, which returns the
// script with its outputs regenerated.
func Run(t *testing.T, glob string, replay func(t *testing.T, script string) string) {
	t.Helper()
	files, err := filepath.Glob(glob)
	if err != nil || len(files) == 0 {
		t.Fatalf("no transcripts match %s: %v", glob, err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			got := replay(t, string(b))
			if *rewrite {
				if err := os.WriteFile(f, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			if got != string(b) {
				t.Errorf("%s differs (run with -rewrite and review the diff):\n%s", f, Diff(string(b), got))
			}
		})
	}
}

// Replay copies the script's input lines, comments and blank lines, and
// after each input line the output lines step emits for it, indented; the
// script's own (expected) output lines are dropped. step gets the line's
// number, its first word and the rest.
func Replay(script string, step func(line int, cmd string, args []string, emit func(string))) string {
	var out strings.Builder
	emit := func(s string) { out.WriteString("  " + s + "\n") }
	for i, line := range strings.Split(strings.TrimRight(script, "\n"), "\n") {
		if strings.HasPrefix(line, "  ") {
			continue // expected output: regenerated
		}
		out.WriteString(line + "\n")
		if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		step(i+1, fields[0], fields[1:], emit)
	}
	return out.String()
}

// Diff lists the lines where want and got differ.
func Diff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	for i := 0; i < max(len(w), len(g)); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			fmt.Fprintf(&b, "line %d:\n- %s\n+ %s\n", i+1, wl, gl)
		}
	}
	return b.String()
}
