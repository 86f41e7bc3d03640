//go:build e2e

package e2e

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The stack's rendered nginx.conf is valid, routes writes (waiting or not)
// to locations that retry them only when a replica gave no answer, and
// keeps reads retried.
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
	// Writes are retried only when no answer came (nginx/retry_test.go
	// shows how), within a window below their read timeout.
	for _, loc := range []string{"location @api_write {", "location @api_write_wait {"} {
		if write := block(t, text, loc); !strings.Contains(write, "proxy_next_upstream error timeout http_502;") ||
			!strings.Contains(write, "proxy_next_upstream_timeout ") {
			t.Errorf("a write location is not retried on errors only, within a window:\n%s", write)
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
		"proxy_next_upstream error timeout http_502;",
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

// freeAddr is a loopback address nothing listens on now.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
