package worker

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// A worker's HTTP handler is read-only and, with a token, serves /metrics
// only to requests that carry it; /healthz then says only that it is up.
// By default it listens on loopback only.
func TestHandlerReadOnlyWithToken(t *testing.T) {
	if host, _, _ := net.SplitHostPort(DefaultConfig().HTTPAddr); host != "127.0.0.1" {
		t.Errorf("default --http-addr %q, want one on 127.0.0.1", DefaultConfig().HTTPAddr)
	}
	c := DefaultConfig()
	c.Etcd, c.Insecure, c.HTTPToken = []string{"127.0.0.1:1"}, true, "worker-token-0123456789"
	w, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(w.Handler())
	defer srv.Close()
	do := func(method, path, token string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := do("GET", "/metrics", ""); code != http.StatusUnauthorized {
		t.Errorf("GET /metrics without the token: %d, want 401", code)
	}
	if code, body := do("GET", "/metrics", c.HTTPToken); code != http.StatusOK || !strings.Contains(body, "ringtrain_") {
		t.Errorf("GET /metrics with the token: %d %.80q", code, body)
	}
	for _, p := range []string{"/metrics", "/healthz"} {
		if code, _ := do("POST", p, c.HTTPToken); code != http.StatusMethodNotAllowed {
			t.Errorf("POST %s: %d, want 405", p, code)
		}
	}
	if code, body := do("GET", "/healthz", ""); code != http.StatusOK || body != "ok\n" {
		t.Errorf("GET /healthz without the token: %d %q", code, body)
	}
}
