//go:build e2e

package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kvstack/kvstack/lab/native"
)

// Through nginx only the API answers: none of the ways of spelling a
// replica's /metrics or pprof path reaches one.
func TestOnlyTheAPIBehindNginx(t *testing.T) {
	h := newHarness(t)
	for _, path := range []string{
		"/metrics", "/metrics/", "//metrics", "/%6detrics", "/METRICS", "/api/../metrics", "/healthz/../metrics",
		"/debug/pprof/", "/debug/pprof/goroutine?debug=1", "/debug/pprof/cmdline", "/debug/vars",
		"/api/%2e%2e/metrics", "/./metrics", "/api/all/../../debug/pprof/heap",
	} {
		t.Run(path, func(t *testing.T) {
			status := rawRequest(t, h.addr("KV_NGINX_PORT"), h.trust(t), "GET "+path+" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
			if status != http.StatusNotFound && status != http.StatusBadRequest {
				t.Fatalf("GET %s through nginx: status %d, want 404 (or 400)", path, status)
			}
			r, err := h.try(http.MethodGet, h.nginx+path, nil)
			if err == nil && (bytes.Contains(r.body, []byte("go_goroutines")) || bytes.Contains(r.body, []byte("goroutine profile"))) {
				t.Fatalf("GET %s through nginx reached a replica's admin handler", path)
			}
		})
	}
	// A Host header naming a replica changes nothing.
	r := h.do(t, http.MethodGet, "/metrics", nil, "Host", h.addr("KV_API1_PORT"))
	if r.status != http.StatusNotFound {
		t.Fatalf("GET /metrics with Host %s: %d, want 404", h.addr("KV_API1_PORT"), r.status)
	}
}

// Every process of the stack, and the services it uses, listens on
// loopback only. Other listeners of the machine are reported, not failed:
// they are not this project's (and the shared services are not changed).
func TestListenersOnLoopback(t *testing.T) {
	env := loadStackEnv(t)
	out, err := exec.Command("ss", "-Hltnp").Output()
	if err != nil {
		t.Fatalf("ss -ltnp: %v", err)
	}
	ours := map[string]bool{}
	for _, v := range []string{"KV_NGINX_PORT", "KV_API1_PORT", "KV_API2_PORT", "KV_CONSUMER_PORT", "KV_PROMETHEUS_PORT",
		"KV_API1_ADMIN_PORT", "KV_API2_ADMIN_PORT", "KV_CONSUMER_ADMIN_PORT",
		"KV_ALERTMANAGER_PORT", "KV_JAEGER_UI_PORT", "KV_JAEGER_OTLP_GRPC_PORT", "KV_JAEGER_OTLP_HTTP_PORT",
		"PGPORT", "REDIS_PORT", "RABBITMQ_PORT", "RABBITMQ_METRICS_PORT"} {
		ours[env.vars[v]] = true
	}
	ourProcs := []string{`"api"`, `"consumer"`, `"nginx"`, `"prometheus"`, `"prometheus-aler"`, `"jaeger"`, `"postgres"`, `"redis-server"`, `"beam.smp"`, `"epmd"`}
	seen := 0
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if len(f) < 4 {
			continue
		}
		local := f[3]
		host, port, err := net.SplitHostPort(local)
		if err != nil {
			continue
		}
		procs := strings.Join(f[5:], " ")
		ip := net.ParseIP(strings.Trim(host, "[]"))
		loopback := ip != nil && ip.IsLoopback()
		isOurs := ours[port]
		for _, p := range ourProcs {
			isOurs = isOurs || strings.Contains(procs, p)
		}
		if isOurs {
			seen++
		}
		switch {
		case loopback:
		case isOurs:
			t.Errorf("%s listens on %s, not loopback: %s", procs, local, line)
		default:
			t.Logf("not this project's, not loopback (reported only): %s %s", local, procs)
		}
	}
	if seen < 5 {
		t.Fatalf("found only %d listeners of the stack in `ss -ltnp` (is it up? `make up`):\n%s", seen, out)
	}
}

// No credential of the stack appears in its logs: the URLs that carry a
// password are logged masked.
func TestCredentialsNeverLogged(t *testing.T) {
	env := loadStackEnv(t)
	logs, _ := filepath.Glob(filepath.Join(env.dir(), "logs", "*.log"))
	if len(logs) < 4 {
		t.Fatalf("only %d logs under %s (is the stack up?)", len(logs), env.dir())
	}
	// The native stack's credentials (lab/scripts/services.sh, lab/native) in the
	// forms they would be logged in.
	secrets := []string{"kvstack:kvstack@", "guest:guest@", "PGPASSWORD=", "password=kvstack", `"Password":"kvstack"`, `"Password":"guest"`,
		// Each process's own (docs/SECURITY.md, least privilege).
		"kvstack_app:kvstack_app@", "kvstack_monitor:kvstack_monitor@", "kvstack_api:kvstack_api@", "kvstack_consumer:kvstack_consumer@",
		`"Password":"kvstack_app"`, `"Password":"kvstack_monitor"`}
	masked := false
	for _, file := range logs {
		f, err := os.Open(file)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 4<<20)
		for n := 1; sc.Scan(); n++ {
			line := sc.Bytes()
			for _, s := range secrets {
				if bytes.Contains(line, []byte(s)) {
					t.Errorf("%s:%d holds the credential %q", file, n, s)
				}
			}
			masked = masked || bytes.Contains(line, []byte(":xxxxx@"))
		}
		f.Close()
	}
	if !masked {
		t.Errorf("no masked URL (user:xxxxx@) in the logs: the start-up config lines are missing, so this test proves nothing")
	}
}

// nginx's limits, each shown on a private nginx rendered from the same
// template (a stub upstream, a low rate): per-client rate limit (429 +
// Retry-After, JSON), header size (large_client_header_buffers), request
// line size, body size.
func TestNginxLimitsOnAPrivateNginx(t *testing.T) {
	stub := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusOK)
		io.WriteString(w, `{"ok":true}`)
	}))
	t.Cleanup(stub.Close)
	stubAddr := strings.TrimPrefix(stub.URL, "http://")
	dir := t.TempDir()
	os.Chmod(dir, 0o777) // nginx's workers (nobody) write their temp files here
	listen := freeAddr(t)
	tlsDir := filepath.Join(dir, "tls")
	if _, err := native.MakeEdgeCerts(tlsDir, []string{"localhost", "127.0.0.1", "::1"}, time.Now()); err != nil {
		t.Fatal(err)
	}
	trust, err := native.ClientTLS(filepath.Join(tlsDir, native.CAFile))
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{
		"NGINX_LISTEN": listen, "NGINX_TLS_CERT": filepath.Join(tlsDir, native.EdgeFile), "NGINX_TLS_KEY": filepath.Join(tlsDir, native.EdgeKeyFile), "NGINX_STATUS_LISTEN": freeAddr(t), "API1_ADDR": stubAddr, "API2_ADDR": stubAddr, "KV_MAX_BODY_BYTES": "1024",
		"NGINX_RATE_LIMIT": "5r/s", "NGINX_RATE_BURST": "5", "NGINX_WAIT_CONN_LIMIT": "20", "NGINX_TRACE_TRUSTED": "# nobody",
		"NGINX_ACCESS_LOG": filepath.Join(dir, "access.log"), "NGINX_ERROR_LOG": filepath.Join(dir, "error.log"),
	}
	root, _ := filepath.Abs("../..")
	tmpl, err := os.ReadFile(filepath.Join(root, "nginx", "nginx.conf.template"))
	if err != nil {
		t.Fatal(err)
	}
	conf := string(tmpl)
	for k, v := range vars {
		conf = strings.ReplaceAll(conf, "${"+k+"}", v)
	}
	for _, want := range []string{"large_client_header_buffers", "client_header_timeout", "client_body_timeout", "send_timeout", "limit_req zone="} {
		if !strings.Contains(conf, want) {
			t.Errorf("nginx/nginx.conf.template has no %s", want)
		}
	}
	confFile := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(confFile, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	runNginx(t, dir, confFile, vars["NGINX_ERROR_LOG"], &stderr)
	base := "https://" + listen
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: trust}}
	eventually(t, 10*time.Second, func() string {
		resp, err := client.Get(base + "/healthz")
		if err != nil {
			return fmt.Sprintf("private nginx on %s: %v (%s)", listen, err, stderr.String())
		}
		resp.Body.Close()
		return ""
	})
	time.Sleep(1200 * time.Millisecond) // the healthz polls above spent some of the burst: let it refill

	t.Run("rate limit", func(t *testing.T) {
		var ok, limited int
		for range 30 {
			resp, err := client.Get(base + "/healthz")
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			switch resp.StatusCode {
			case http.StatusOK:
				ok++
			case http.StatusTooManyRequests:
				limited++
				if resp.Header.Get("Retry-After") == "" || !bytes.Contains(b, []byte(`"rate_limited"`)) {
					t.Errorf("429 without Retry-After or JSON body: %v %s", resp.Header, b)
				}
			default:
				t.Errorf("status %d", resp.StatusCode)
			}
		}
		// 5 r/s with a burst of 5: about 6 pass in a burst of 30 (more on
		// a slow machine: the bucket refills while they are sent).
		if limited < 5 || ok < 5 {
			t.Fatalf("30 requests at once: %d served, %d limited; want ~6 served, the rest 429", ok, limited)
		}
	})
	time.Sleep(2 * time.Second) // refill
	t.Run("header too large", func(t *testing.T) {
		status := rawRequest(t, listen, trust, "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: "+strings.Repeat("x", 17<<10)+"\r\n\r\n")
		if status != http.StatusBadRequest && status != http.StatusRequestHeaderFieldsTooLarge {
			t.Fatalf("a 17 KiB header: %d, want 400/431", status)
		}
	})
	t.Run("request line too large", func(t *testing.T) {
		status := rawRequest(t, listen, trust, "GET /api?key="+strings.Repeat("k", 17<<10)+" HTTP/1.1\r\nHost: x\r\n\r\n")
		if status != http.StatusRequestURITooLong && status != http.StatusBadRequest {
			t.Fatalf("a 17 KiB request line: %d, want 414", status)
		}
	})
	t.Run("body too large", func(t *testing.T) {
		time.Sleep(400 * time.Millisecond)
		req, _ := http.NewRequest(http.MethodPut, base+"/api", bytes.NewReader(make([]byte, 2048)))
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Fatalf("2 KiB body over a 1 KiB limit: %d, want 413", resp.StatusCode)
		}
	})
}
