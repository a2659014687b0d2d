// Package httpauth guards the read-only HTTP endpoints of the cluster roles
// (the dashboard, /metrics, /api/snapshot, /healthz): only GET and HEAD are
// served, and with a token every path but /healthz requires
// "Authorization: Bearer <token>". Without the token /healthz answers that
// the process is up and nothing else.
package httpauth

import (
	"bytes"
	"crypto/subtle"
	"net/http"
	"os"
	"strings"

	"github.com/ringtrain/ringtrain/internal/usage"
)

// HealthPath is the one path served without the token.
const HealthPath = "/healthz"

// MinTokenLen is the shortest token accepted.
const MinTokenLen = 16

// ReadTokenFile reads a token file: one line, surrounding whitespace
// ignored, at least MinTokenLen characters, no inner whitespace. Errors are
// usage errors naming flag, the file and the fix.
func ReadTokenFile(flag, path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", usage.Errorf("%s %q: %v; give a file holding the token, e.g. made by `openssl rand -hex 32 > http.token`", flag, path, err)
	}
	tok := string(bytes.TrimSpace(b))
	if len(tok) < MinTokenLen || strings.ContainsAny(tok, " \t\r\n") {
		return "", usage.Errorf("%s %q: the token must be one word of at least %d characters (it has %d); e.g. `openssl rand -hex 32 > http.token`",
			flag, path, MinTokenLen, len(tok))
	}
	return tok, nil
}

// TokenOr is tok if it is set, else the token read from path (flag names it
// in errors), else "": a configuration's token wins over its token file.
func TokenOr(tok, flag, path string) (string, error) {
	if tok != "" || path == "" {
		return tok, nil
	}
	return ReadTokenFile(flag, path)
}

// Guard serves h read-only and, when token is not empty, only to requests
// that carry it. A method other than GET or HEAD is 405 on every path; a
// missing or wrong token is 401, except on HealthPath, which then answers
// "ok" itself without reaching h.
func Guard(h http.Handler, token string) http.Handler {
	want := []byte("Bearer " + token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "read-only: only GET and HEAD are served", http.StatusMethodNotAllowed)
			return
		}
		if token == "" || subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), want) == 1 {
			h.ServeHTTP(w, r)
			return
		}
		if r.URL.Path == HealthPath {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.Write([]byte("ok\n")) //nolint:errcheck // client went away
			return
		}
		w.Header().Set("WWW-Authenticate", `Bearer realm="ringtrain"`)
		http.Error(w, "unauthorized: send Authorization: Bearer <token> (the --http-token-file's token)", http.StatusUnauthorized)
	})
}
