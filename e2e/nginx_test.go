//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kvstack/kvstack/deploy/native"
)

// The stack's rendered nginx.conf is valid, routes writes (waiting or not)
// to locations that are never retried, and keeps reads retried.
func TestRenderedNginxConfig(t *testing.T) {
	env := loadStackEnv(t)
	conf := filepath.Join(env.dir(), "config", "nginx.conf")
	raw, err := os.ReadFile(conf)
	if err != nil {
		t.Fatalf("rendered nginx config: %v (run `make up`, or bin/stack render)", err)
	}
	pid := filepath.Join(t.TempDir(), "nginx.pid")
	out, err := exec.Command("nginx", "-t", "-p", filepath.Join(env.dir(), "nginx")+"/", "-c", conf,
		"-e", filepath.Join(t.TempDir(), "error.log"), "-g", "pid "+pid+";").CombinedOutput()
	if err != nil {
		t.Fatalf("nginx -t rejects %s: %v\n%s", conf, err, out)
	}
	text := uncommented(raw)
	if strings.Contains(text, "${") {
		t.Errorf("%s still holds an unrendered ${...}", conf)
	}
	for _, loc := range []string{"location @api_write {", "location @api_write_wait {"} {
		if write := block(t, text, loc); !strings.Contains(write, "proxy_next_upstream off;") {
			t.Errorf("a write location does not turn retries off:\n%s", write)
		}
	}
	if wait := block(t, text, "location @api_read_wait {"); strings.Contains(wait, "http_503") {
		t.Errorf("a waiting read is retried on 503 (the replica's waiters cap), which leaves the replica alone as failed:\n%s", wait)
	}
	api := block(t, text, "location = /api {")
	for _, want := range []string{
		"error_page 418 = @api_write;", "if ($kv_api_route = write) {",
		"error_page 419 = @api_write_wait;", "if ($kv_api_route = write_wait) {",
		"error_page 420 = @api_read_wait;", "if ($kv_api_route = read_wait) {",
	} {
		if !strings.Contains(api, want) {
			t.Errorf("location = /api lacks %q:\n%s", want, api)
		}
	}
	for _, want := range []string{
		"proxy_next_upstream error timeout http_502 http_503;",
		"keepalive 64;", `proxy_set_header Connection "";`, "proxy_http_version 1.1;",
		"server_tokens off;", "client_max_body_size 1048576;", "max_fails=",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("rendered config lacks %q", want)
		}
	}
}

// block returns the text of the brace block that starts with head.
func block(t *testing.T, text, head string) string {
	t.Helper()
	i := strings.Index(text, head)
	if i < 0 {
		t.Fatalf("config has no %q", head)
	}
	depth := 0
	for j := i; j < len(text); j++ {
		switch text[j] {
		case '{':
			depth++
		case '}':
			if depth--; depth == 0 {
				return text[i : j+1]
			}
		}
	}
	t.Fatalf("unbalanced block %q", head)
	return ""
}

// fakeReplica is an upstream that counts requests per method and, when
// broken, reads the request and then drops the connection without an
// answer: the worst case for a write, which may have been applied.
type fakeReplica struct {
	addr   string
	broken atomic.Bool
	gets   atomic.Int64
	puts   atomic.Int64
}

func newFakeReplica(t *testing.T) *fakeReplica {
	t.Helper()
	f := &fakeReplica{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.addr = ln.Addr().String()
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		switch r.Method {
		case http.MethodGet:
			f.gets.Add(1)
		default:
			f.puts.Add(1)
		}
		if f.broken.Load() {
			conn, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				conn.Close()
			}
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"replica":%q}`, f.addr)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return f
}

// edge is a private nginx rendered from the same template by the same
// script, in front of two fake replicas.
type edge struct {
	url    string
	client *http.Client
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func startEdge(t *testing.T, api1, api2 string, extraEnv ...string) *edge {
	t.Helper()
	dir := t.TempDir()
	listen := freeAddr(t)
	env := loadStackEnv(t, append([]string{
		"KV_STACK_DIR=" + dir, "NGINX_LISTEN=" + listen, "NGINX_STATUS_LISTEN=" + freeAddr(t),
		"API1_ADDR=" + api1, "API2_ADDR=" + api2,
	}, extraEnv...)...)
	if err := native.WriteConfigs(context.Background(), env.s, nil, nil); err != nil {
		t.Fatalf("rendering the configs: %v", err)
	}
	runNginx(t, filepath.Join(dir, "nginx"), filepath.Join(dir, "config", "nginx.conf"), filepath.Join(dir, "logs", "nginx.log"), nil)
	e := &edge{url: "http://" + listen, client: &http.Client{Timeout: 10 * time.Second}}
	eventually(t, 5*time.Second, func() string {
		if _, err := e.client.Get(e.url + "/nothing"); err != nil {
			return "private nginx does not answer: " + err.Error()
		}
		return ""
	})
	return e
}

func (e *edge) do(t *testing.T, method, path string) response {
	t.Helper()
	h := &harness{client: e.client}
	r, err := h.try(method, e.url+path, []byte(`{"key":"k","value":"v"}`))
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	return r
}

// With one replica failing after it read the request: a PUT or DELETE is
// not retried (502), since the failed replica may have applied it; a GET is
// retried on the other one and succeeds.
func TestNginxRetriesReadsNeverWrites(t *testing.T) {
	a, b := newFakeReplica(t), newFakeReplica(t)
	e := startEdge(t, a.addr, b.addr)
	a.broken.Store(true)

	// Writes: each reaches exactly one replica. Those that reach the broken
	// one fail; nginx then leaves it alone for fail_timeout (2s), so wait
	// that long after a failure to have writes land on it again.
	var writes, failedWrites int
	for writes < 12 && (writes < 4 || failedWrites < 2) {
		method := []string{http.MethodPut, http.MethodDelete}[writes%2]
		before := a.puts.Load() + b.puts.Load()
		r := e.do(t, method, "/api")
		writes++
		if sent := a.puts.Load() + b.puts.Load() - before; sent != 1 {
			t.Errorf("%s %d reached the replicas %d times, want exactly 1", method, writes, sent)
		}
		switch r.status {
		case http.StatusOK:
		case http.StatusBadGateway:
			failedWrites++
			if got := r.json(t)["error"]; got != "bad_gateway" {
				t.Errorf("502 body: error %v, want bad_gateway", got)
			}
			time.Sleep(2100 * time.Millisecond)
		default:
			t.Errorf("%s %d: status %d, want 200 or 502", method, writes, r.status)
		}
	}
	if failedWrites == 0 || a.puts.Load() != int64(failedWrites) {
		t.Errorf("%d writes failed, %d reached the broken replica: want the same, > 0", failedWrites, a.puts.Load())
	}

	// Reads: nginx tries the broken replica again once fail_timeout has
	// passed, and each time retries on the healthy one.
	var gets int64
	for deadline := time.Now().Add(6 * time.Second); a.gets.Load() < 2 && time.Now().Before(deadline); {
		if r := e.do(t, http.MethodGet, "/api?key=k"); r.status != http.StatusOK {
			t.Fatalf("GET %d with one broken replica: status %d, body %s", gets, r.status, r.body)
		}
		gets++
		time.Sleep(100 * time.Millisecond)
	}
	if a.gets.Load() < 2 {
		t.Errorf("the broken replica got %d of %d GETs: the test proved nothing", a.gets.Load(), gets)
	}
	if got := b.gets.Load(); got != gets {
		t.Errorf("healthy replica answered %d GETs, want all %d", got, gets)
	}
}

// nginx's own errors are JSON: 502 when no replica answers, 429 past the
// per-client rate, 404 off the routes.
func TestNginxErrorsAreJSON(t *testing.T) {
	dead1, dead2 := freeAddr(t), freeAddr(t)
	e := startEdge(t, dead1, dead2, "NGINX_RATE_LIMIT=1r/s", "NGINX_RATE_BURST=3")
	tests := []struct {
		method, path string
		status       int
		code         string
	}{
		{http.MethodGet, "/api?key=k", http.StatusBadGateway, "bad_gateway"},
		{http.MethodPut, "/api", http.StatusBadGateway, "bad_gateway"},
		{http.MethodGet, "/metrics", http.StatusNotFound, "not_found"},
	}
	for _, tt := range tests {
		r := e.do(t, tt.method, tt.path)
		if r.status != tt.status || r.json(t)["error"] != tt.code {
			t.Errorf("%s %s: %d %s, want %d with error %s", tt.method, tt.path, r.status, r.body, tt.status, tt.code)
		}
		if ct := r.header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("%s %s: Content-Type %q, want application/json", tt.method, tt.path, ct)
		}
	}
	// The burst is spent: the next ones are limited.
	var limited response
	for range 10 {
		if limited = e.do(t, http.MethodGet, "/healthz"); limited.status == http.StatusTooManyRequests {
			break
		}
	}
	if limited.status != http.StatusTooManyRequests || limited.json(t)["error"] != "rate_limited" {
		t.Fatalf("past the rate: %d %s, want 429 rate_limited", limited.status, limited.body)
	}
	if limited.header.Get("Retry-After") == "" || limited.header.Get("X-Request-Id") == "" {
		t.Errorf("429 headers %v: want Retry-After and X-Request-Id", limited.header)
	}
}
