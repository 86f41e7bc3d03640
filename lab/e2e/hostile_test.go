//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// hostile is one bad request: method, path, body and headers.
type hostile struct {
	name, method, path string
	body               []byte
	header             []string
}

// hostileCorpus: requests a client may send by mistake or on purpose. Each
// must get a 4xx; none may reach the queue.
func hostileCorpus() []hostile {
	j := func(s string) []byte { return []byte(s) }
	deep := strings.Repeat("[", 100000) + strings.Repeat("]", 100000)
	deepObj := strings.Repeat(`{"a":`, 50000) + "1" + strings.Repeat("}", 50000)
	long := strings.Repeat("k", 513)
	bigValue := `{"key":"big","value":"` + strings.Repeat("v", 256<<10+1) + `"}`
	var cases []hostile
	for _, c := range []struct{ name, body string }{
		{"empty body", ""},
		{"whitespace", "   \n"},
		{"truncated object", `{"key":"a","value":"b"`},
		{"truncated string", `{"key":"a","value":"b`},
		{"lone brace", `{`},
		{"not json", `key=a&value=b`},
		{"json null", `null`},
		{"json array", `[{"key":"a","value":"b"}]`},
		{"json string", `"a"`},
		{"json number", `42`},
		{"key number", `{"key":1,"value":"b"}`},
		{"value number", `{"key":"a","value":1}`},
		{"value object", `{"key":"a","value":{"x":1}}`},
		{"value array", `{"key":"a","value":["b"]}`},
		{"value bool", `{"key":"a","value":true}`},
		{"key null", `{"key":null,"value":"b"}`},
		{"value null", `{"key":"a","value":null}`},
		{"missing key", `{"value":"b"}`},
		{"missing value", `{"key":"a"}`},
		{"unknown field", `{"key":"a","value":"b","op_id":"00000000-0000-0000-0000-000000000000"}`},
		{"timestamp smuggled", `{"key":"a","value":"b","timestamp":"2999-01-01T00:00:00Z"}`},
		{"trailing data", `{"key":"a","value":"b"} {"key":"c","value":"d"}`},
		{"trailing garbage", `{"key":"a","value":"b"}xyz`},
		{"empty key", `{"key":"","value":"b"}`},
		{"key 513 bytes", `{"key":"` + long + `","value":"b"}`},
		{"key with NUL", `{"key":"a\u0000b","value":"b"}`},
		{"key with newline", `{"key":"a\nb","value":"b"}`},
		{"key with ESC", `{"key":"a\u001bb","value":"b"}`},
		{"key with DEL", "{\"key\":\"a\x7fb\",\"value\":\"b\"}"},
		{"key invalid UTF-8", "{\"key\":\"a\xffb\",\"value\":\"b\"}"},
		{"value invalid UTF-8", "{\"key\":\"a\",\"value\":\"\xc3\x28\"}"},
		{"value with NUL", `{"key":"a","value":"x\u0000y"}`},
		{"value over 256 KiB", bigValue},
		{"deeply nested array value", `{"key":"a","value":` + deep + `}`},
		{"deeply nested object", deepObj},
		{"bad escape", `{"key":"a\q","value":"b"}`},
	} {
		cases = append(cases, hostile{name: "PUT " + c.name, method: http.MethodPut, path: "/api", body: j(c.body),
			header: []string{"Content-Type", "application/json"}})
	}
	// encoding/json alone would turn a lone UTF-16 surrogate into U+FFFD
	// (a\ud800b, a\udc00b and a\ufffdb would all become one key), match
	// field names case-insensitively, and keep the last of duplicate
	// fields: the API refuses each.
	cases = append(cases,
		hostile{name: "PUT key lone surrogate", method: http.MethodPut, path: "/api", body: j(`{"key":"a\ud800b","value":"b"}`)},
		hostile{name: "PUT value lone surrogate", method: http.MethodPut, path: "/api", body: j(`{"key":"surrogate-value","value":"\udfff"}`)},
		hostile{name: "PUT upper-case field names", method: http.MethodPut, path: "/api", body: j(`{"KEY":"hostile-case","Value":"b"}`)},
		hostile{name: "PUT duplicate key field", method: http.MethodPut, path: "/api", body: j(`{"key":"hostile-dup-1","key":"hostile-dup-2","value":"b"}`)},
	)
	for _, c := range []struct{ name, query string }{
		{"no key", ""},
		{"empty key", "?key="},
		{"key 513 bytes", "?key=" + long},
		{"key NUL", "?key=a%00b"},
		{"key control", "?key=a%01b"},
		{"key invalid UTF-8", "?key=a%FFb"},
		{"key bad escape", "?key=a%zzb"},
	} {
		cases = append(cases,
			hostile{name: "GET " + c.name, method: http.MethodGet, path: "/api" + c.query},
			hostile{name: "DELETE " + c.name, method: http.MethodDelete, path: "/api" + c.query})
	}
	cases = append(cases,
		hostile{name: "DELETE body without key", method: http.MethodDelete, path: "/api", body: j(`{"value":"x"}`)},
		hostile{name: "DELETE body key number", method: http.MethodDelete, path: "/api", body: j(`{"key":5}`)},
		hostile{name: "PUT query and body keys differ", method: http.MethodPut, path: "/api?key=hostile-q", body: j(`{"key":"hostile-q2","value":"b"}`)},
		hostile{name: "GET /api/all bad limit", method: http.MethodGet, path: "/api/all?limit=-1"},
		hostile{name: "GET /api/all huge limit", method: http.MethodGet, path: "/api/all?limit=99999999999999999999"},
		hostile{name: "GET /api/all bad cursor", method: http.MethodGet, path: "/api/all?cursor=%FF%FE"},
		hostile{name: "PUT body over 1 MiB", method: http.MethodPut, path: "/api", body: make([]byte, 1<<20+1)},
	)
	for _, m := range []string{"POST", "PATCH", "OPTIONS", "TRACE", "PROPFIND", "MKCOL", "FOO"} {
		cases = append(cases, hostile{name: m + " /api", method: m, path: "/api", body: j(`{"key":"a","value":"b"}`)})
	}
	for _, m := range []string{"PUT", "DELETE", "POST"} {
		cases = append(cases, hostile{name: m + " /api/all", method: m, path: "/api/all", body: j(`{"key":"a","value":"b"}`)})
	}
	cases = append(cases,
		hostile{name: "PUT as form", method: http.MethodPut, path: "/api", body: j(`key=a&value=b`),
			header: []string{"Content-Type", "application/x-www-form-urlencoded"}},
		hostile{name: "header 20 KiB", method: http.MethodGet, path: "/api?key=a", header: []string{"X-Junk", strings.Repeat("x", 20<<10)}},
		hostile{name: "cookie 40 KiB", method: http.MethodGet, path: "/api?key=a", header: []string{"Cookie", strings.Repeat("c=1; ", 8<<10)}},
		hostile{name: "URI 20 KiB", method: http.MethodGet, path: "/api?key=" + strings.Repeat("k", 20<<10)},
	)
	return cases
}

// Every hostile request gets a 4xx; nothing reaches the queue as a message
// the consumer cannot apply (the DLQs do not grow); no process dies; the
// replicas' goroutines come back to where they were.
func TestHostileRequestsGet4xx(t *testing.T) {
	h := newHarness(t)
	pids := h.stackPids(t)
	dlq := dlqCounts(t)
	g1 := goroutines(t, h.addr("KV_API1_ADMIN_PORT"))
	g2 := goroutines(t, h.addr("KV_API2_ADMIN_PORT"))

	for _, c := range hostileCorpus() {
		t.Run(c.name, func(t *testing.T) {
			r, err := h.try(c.method, h.nginx+c.path, c.body, c.header...)
			if err != nil {
				t.Fatalf("%s %.60s: %v", c.method, c.path, err)
			}
			if r.status < 400 || r.status > 499 {
				t.Fatalf("%s %.60s (%d-byte body): status %d, want 4xx; body %.200s", c.method, c.path, len(c.body), r.status, r.body)
			}
		})
	}
	for _, c := range rawCorpus() {
		t.Run("raw "+c.name, func(t *testing.T) {
			status := rawRequest(t, h.addr("KV_NGINX_PORT"), h.trust(t), c.request)
			if status < 400 || status > 499 {
				t.Fatalf("status %d, want 4xx (request %.120q)", status, c.request)
			}
		})
	}

	h.requireSamePids(t, pids)
	eventually(t, 10*time.Second, func() string {
		if got := dlqCounts(t); got != dlq {
			return fmt.Sprintf("dead-letter queues went from %v to %v", dlq, got)
		}
		return ""
	})
	requireGoroutinesBack(t, h.addr("KV_API1_ADMIN_PORT"), g1)
	requireGoroutinesBack(t, h.addr("KV_API2_ADMIN_PORT"), g2)
}

type raw struct{ name, request string }

// rawCorpus: requests net/http would refuse to send.
func rawCorpus() []raw {
	return []raw{
		{"garbage request line", "GARBAGE\r\n\r\n"},
		{"HTTP/1.1 without Host", "GET /api?key=a HTTP/1.1\r\n\r\n"},
		{"two Host headers", "GET /api?key=a HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"},
		{"Content-Length and chunked", "PUT /api HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
		{"bad chunk size", "PUT /api HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\nabc\r\n0\r\n\r\n"},
		{"negative Content-Length", "PUT /api HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n"},
		{"header without colon", "GET /api?key=a HTTP/1.1\r\nHost: x\r\nNoColonHere\r\n\r\n"},
		{"control char in header", "GET /api?key=a HTTP/1.1\r\nHost: x\r\nX-A: a\x01b\r\n\r\n"},
		{"NUL in URI", "GET /api?key=a\x00b HTTP/1.1\r\nHost: x\r\n\r\n"},
		{"HTTP/2 preface on HTTP/1", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"},
		{"absolute URI other host", "GET http://169.254.169.254/latest/meta-data/ HTTP/1.1\r\nHost: x\r\n\r\n"},
		{"path traversal to metrics", "GET /api/../metrics HTTP/1.1\r\nHost: x\r\n\r\n"},
		{"encoded path traversal", "GET /api/%2e%2e/debug/pprof/ HTTP/1.1\r\nHost: x\r\n\r\n"},
	}
}

// rawRequest writes request on a fresh TLS connection to the edge at addr
// and returns the status of the answer (0 when the connection closed
// without one).
func rawRequest(t *testing.T, addr string, trust *tls.Config, request string) int {
	t.Helper()
	conn, err := dialEdge(addr, trust)
	if err != nil {
		t.Fatalf("dial nginx %s: %v", addr, err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, request); err != nil {
		t.Fatalf("write: %v", err)
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		t.Fatalf("no answer to %.80q: %v", request, err)
	}
	f := strings.Fields(line)
	if len(f) < 2 {
		t.Fatalf("status line %q", line)
	}
	n, _ := strconv.Atoi(f[1])
	return n
}

// SQL- and Lua-looking strings are data: stored and read back unchanged,
// and the store and the cache keep working (no table dropped, no script
// run).
func TestInjectionLookingStringsRoundTrip(t *testing.T) {
	h := newHarness(t)
	dlq := dlqCounts(t)
	payloads := []string{
		`'; DROP TABLE kv_store; --`,
		`" OR 1=1; --`,
		`Robert'); DELETE FROM kv_store WHERE ('1'='1`,
		`$1; SELECT pg_sleep(10); --`,
		`redis.call('FLUSHALL')`,
		`]] .. redis.call("FLUSHALL") .. [[`,
		`"); os.exit(1); --`,
		"EVAL \"return redis.call('FLUSHALL')\" 0\r\nFLUSHALL\r\n",
		`{"v":"99999999999999999999:zzz","d":"1","val":"x"}`,
		`%s%s%n%x ${jndi:ldap://x/a} {{7*7}} <script>alert(1)</script>`,
		"ünïcødé ✓ 𝄞 \u2028\u2029",
	}
	keys := make([]string, len(payloads))
	for i, p := range payloads {
		keys[i] = uniq("e2e-inject") + "-" + strings.Map(func(r rune) rune {
			if r < 0x20 || r == 0x7f {
				return '_'
			}
			return r
		}, p)
		if r := h.put(t, keys[i], p); r.status != http.StatusAccepted {
			t.Fatalf("PUT %q: status %d, body %s", p, r.status, r.body)
		}
	}
	for i, p := range payloads {
		eventually(t, 15*time.Second, func() string {
			r := h.do(t, http.MethodGet, "/api?key="+url.QueryEscape(keys[i]), nil)
			if r.status != http.StatusOK {
				return fmt.Sprintf("GET %q: status %d", keys[i], r.status)
			}
			if got := r.json(t)["value"]; got != p {
				return fmt.Sprintf("GET %q = %q, want %q", keys[i], got, p)
			}
			return ""
		})
	}
	// Still there: the table and the cache (every key read back above went
	// through both).
	if r := h.do(t, http.MethodGet, "/api/all?limit=1", nil); r.status != http.StatusOK {
		t.Fatalf("GET /api/all after the payloads: %d", r.status)
	}
	if got := dlqCounts(t); got != dlq {
		t.Fatalf("dead-letter queues went from %v to %v", dlq, got)
	}
}

// A slow client (slowloris: headers a byte at a time; or a body that
// stalls) is cut off by nginx's client timeouts, and meanwhile everybody
// else is served promptly. Bounded: 12 connections, at most ~25 s.
func TestSlowClientsAreCutOff(t *testing.T) {
	h := newHarness(t)
	pids := h.stackPids(t)
	const conns = 12
	const limit = 10*time.Second + 8*time.Second // client_header/body_timeout 10s, plus slack
	type outcome struct {
		kind   string
		took   time.Duration
		status string
		err    error
	}
	results := make(chan outcome, conns)
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for i := range conns {
		wg.Go(func() {
			kind := "headers"
			if i%2 == 1 {
				kind = "body"
			}
			start := time.Now()
			status, err := slowClient(ctx, h.addr("KV_NGINX_PORT"), h.trust(t), kind)
			results <- outcome{kind, time.Since(start), status, err}
		})
	}
	// Meanwhile, normal requests are served promptly.
	for range 20 {
		start := time.Now()
		r := h.do(t, http.MethodGet, "/healthz", nil)
		if r.status != http.StatusOK || time.Since(start) > 2*time.Second {
			t.Errorf("while slow clients hang on: /healthz %d in %s", r.status, time.Since(start))
		}
		time.Sleep(200 * time.Millisecond)
	}
	wg.Wait()
	close(results)
	for o := range results {
		if o.err != nil {
			t.Errorf("slow %s: %v", o.kind, o.err)
			continue
		}
		if o.took > limit {
			t.Errorf("slow %s: connection kept %s, want cut off within %s", o.kind, o.took, limit)
		}
		// nginx answers 408 to a stalled body; a stalled header is just
		// closed (nginx logs 408 and sends nothing).
		if o.status != "" && !strings.HasPrefix(o.status, "4") {
			t.Errorf("slow %s: answered %q, want a 4xx or a close", o.kind, o.status)
		}
	}
	h.requireSamePids(t, pids)
}

// slowClient trickles a request until nginx gives up on it; it returns the
// status nginx answered ("" when it just closed) or an error when nginx
// kept the connection past ctx.
func slowClient(ctx context.Context, addr string, trust *tls.Config, kind string) (string, error) {
	conn, err := dialEdge(addr, trust)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	deadline, _ := ctx.Deadline()
	conn.SetDeadline(deadline)
	var prefix, trickle string
	if kind == "headers" {
		prefix, trickle = "GET /api?key=slow HTTP/1.1\r\nHost: x\r\n", "X-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	} else {
		prefix, trickle = "PUT /api HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"key\":\"slow\",", ""
	}
	if _, err := io.WriteString(conn, prefix); err != nil {
		return "", err
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		// One byte every 15 s (headers): slower than client_header_timeout
		// lets a request line+headers take; the body stalls outright.
		for i := 0; i < len(trickle) && kind == "headers"; i++ {
			select {
			case <-ctx.Done():
				return
			case <-time.After(15 * time.Second):
			}
			if _, err := conn.Write([]byte{trickle[i]}); err != nil {
				return
			}
		}
	}()
	line, err := bufio.NewReader(conn).ReadString('\n')
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return "", fmt.Errorf("nginx still holds the connection after %s", time.Until(deadline)+25*time.Second)
	}
	if f := strings.Fields(line); len(f) >= 2 {
		return f[1], nil
	}
	return "", nil
}

// ---------------------------------------------------------------- helpers

func (h *harness) stackPids(t *testing.T) map[string]int {
	t.Helper()
	m := map[string]int{}
	for _, n := range []string{"api1", "api2", "consumer", "nginx"} {
		m[n] = h.pidOf(t, n)
	}
	return m
}

func (h *harness) requireSamePids(t *testing.T, before map[string]int) {
	t.Helper()
	for n, pid := range before {
		if now := h.pidOf(t, n); now != pid {
			t.Errorf("%s: pid %d before, %d after: it died", n, pid, now)
		}
		if err := exec.Command("kill", "-0", strconv.Itoa(pid)).Run(); err != nil {
			t.Errorf("%s (pid %d) is gone", n, pid)
		}
	}
}

// dlqCounts: "add_key.dlq=N del_key.dlq=M" on the stack's RabbitMQ.
func dlqCounts(t *testing.T) string {
	t.Helper()
	counts, err := loadStackEnv(t).queueDepths("add_key.dlq", "del_key.dlq")
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("add_key.dlq=%d del_key.dlq=%d", counts["add_key.dlq"], counts["del_key.dlq"])
}

var goroutineTotal = regexp.MustCompile(`goroutine profile: total (\d+)`)

// goroutines: the replica's goroutine count (pprof on its admin port).
func goroutines(t *testing.T, addr string) int {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/debug/pprof/goroutine?debug=1")
	if err != nil {
		t.Fatalf("pprof on %s: %v", addr, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
	m := goroutineTotal.FindSubmatch(b)
	if m == nil {
		t.Fatalf("pprof on %s: no total in %.100q", addr, b)
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

// requireGoroutinesBack: the count returns near where it was (connections
// and their goroutines wind down), within a bounded wait.
func requireGoroutinesBack(t *testing.T, addr string, before int) {
	t.Helper()
	slack := 30 + before/5
	eventually(t, 15*time.Second, func() string {
		if n := goroutines(t, addr); n > before+slack {
			return fmt.Sprintf("%s: %d goroutines, %d before the hostile requests (slack %d): a leak", addr, n, before, slack)
		}
		return ""
	})
}
