package httpauth

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ringtrain/ringtrain/internal/usage"
)

const token = "0123456789abcdef0123"

// inner answers "inner <path>" and counts what reached it.
func inner(reached *[]string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		*reached = append(*reached, r.Method+" "+r.URL.Path)
		w.Write([]byte("inner " + r.URL.Path))
	})
}

func TestGuard(t *testing.T) {
	for _, tc := range []struct {
		name, method, path, auth, token string
		code                            int
		body                            string
		reaches                         bool
	}{
		{"open get", "GET", "/metrics", "", "", 200, "inner /metrics", true},
		{"open head", "HEAD", "/", "", "", 200, "", true},
		{"open post", "POST", "/metrics", "", "", 405, "read-only", false},
		{"open delete", "DELETE", "/api/snapshot", "", "", 405, "read-only", false},
		{"token right", "GET", "/api/snapshot", "Bearer " + token, token, 200, "inner /api/snapshot", true},
		{"token missing", "GET", "/metrics", "", token, 401, "Bearer", false},
		{"token wrong", "GET", "/", "Bearer nope", token, 401, "Bearer", false},
		{"token without Bearer", "GET", "/", token, token, 401, "Bearer", false},
		{"token put with it", "PUT", "/", "Bearer " + token, token, 405, "read-only", false},
		{"health without token", "GET", "/healthz", "", token, 200, "ok\n", false},
		{"health with token", "GET", "/healthz", "Bearer " + token, token, 200, "inner /healthz", true},
		{"health post", "POST", "/healthz", "", token, 405, "read-only", false},
		{"health look-alike", "GET", "/healthz/../metrics", "", token, 401, "Bearer", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var reached []string
			req := httptest.NewRequest(tc.method, "http://x"+tc.path, nil)
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			rec := httptest.NewRecorder()
			Guard(inner(&reached), tc.token).ServeHTTP(rec, req)
			if rec.Code != tc.code || !strings.Contains(rec.Body.String(), tc.body) {
				t.Errorf("%s %s: %d %q, want %d with %q", tc.method, tc.path, rec.Code, rec.Body.String(), tc.code, tc.body)
			}
			if got := len(reached) > 0; got != tc.reaches {
				t.Errorf("reached the handler: %v, want %v", reached, tc.reaches)
			}
			if tc.code == 405 && rec.Header().Get("Allow") != "GET, HEAD" {
				t.Errorf("405 without Allow: %v", rec.Header())
			}
		})
	}
}

func TestReadTokenFile(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good")
	os.WriteFile(good, []byte("  "+token+"\n"), 0o600)
	if got, err := ReadTokenFile("--http-token-file", good); err != nil || got != token {
		t.Fatalf("good: %q %v", got, err)
	}
	short := filepath.Join(dir, "short")
	os.WriteFile(short, []byte("abc\n"), 0o600)
	two := filepath.Join(dir, "two")
	os.WriteFile(two, []byte(token+" "+token), 0o600)
	for _, p := range []string{short, two, filepath.Join(dir, "missing")} {
		if _, err := ReadTokenFile("--http-token-file", p); !usage.Is(err) || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), "--http-token-file") {
			t.Errorf("%s: %v, want a usage error naming the flag and the file", p, err)
		}
	}
}
