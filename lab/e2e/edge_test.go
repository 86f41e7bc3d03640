//go:build e2e

package e2e

import (
	"bufio"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"
)

// A traceparent through nginx names a trace Jaeger holds: on every answer
// the API itself gives, errors and a made-up method's 405 included. nginx's
// own answers and the health probes are not traced, and carry none rather
// than one that names nothing.
func TestTraceparentThroughNginx(t *testing.T) {
	h := newHarness(t)
	key := uniq("e2e-tp")
	put := h.put(t, key, "v")
	if put.status != http.StatusAccepted {
		t.Fatalf("PUT = %d %s", put.status, put.body)
	}
	eventually(t, 20*time.Second, func() string {
		if r := h.do(t, http.MethodGet, "/api?key="+url.QueryEscape(key), nil); r.status != http.StatusOK {
			return fmt.Sprintf("GET %s = %d", key, r.status)
		}
		return ""
	})
	big := []byte(strings.Repeat("a", 1<<20+1))
	mismatch := []byte(`{"key":"` + key + `-2","value":"v"}`)

	for _, c := range []struct {
		name, method, path string
		body               []byte
		status             int
		span               string // the kv-api server span; "" when not traced
	}{
		{"read", http.MethodGet, "/api?key=" + url.QueryEscape(key), nil, 200, "GET /api"},
		{"head", http.MethodHead, "/api?key=" + url.QueryEscape(key), nil, 200, "HEAD /api"},
		{"absent key", http.MethodGet, "/api?key=" + url.QueryEscape(key+"-absent"), nil, 404, "GET /api"},
		{"keys disagree", http.MethodPut, "/api?key=" + url.QueryEscape(key), mismatch, 400, "PUT /api"},
		{"made-up method", "BREW", "/api", nil, 405, "HTTP unmatched"},
		{"nginx's 404", http.MethodGet, "/metrics", nil, 404, ""},
		{"nginx's 413", http.MethodPut, "/api", big, 413, ""},
		{"liveness probe", http.MethodGet, "/healthz", nil, 200, ""},
		{"readiness probe", http.MethodGet, "/readyz", nil, 200, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := h.do(t, c.method, c.path, c.body)
			if r.status != c.status {
				t.Fatalf("%s %s = %d %s, want %d", c.method, c.path, r.status, r.body, c.status)
			}
			if c.span == "" {
				if tp := r.header.Get("traceparent"); tp != "" {
					t.Errorf("traceparent %q on an answer nothing traced", tp)
				}
				return
			}
			requireJaegerTrace(t, h, traceIDOf(t, r), opNamed("kv-api", "server", c.span))
		})
	}
}

// A made-up method reaches the API through nginx: a JSON 405, counted on
// the replica that answered as method "other", never under its own name.
func TestMadeUpMethodIsOther(t *testing.T) {
	h := newHarness(t)
	before := otherRequests(t, h)
	r := h.do(t, "BREW", "/api", nil)
	if r.status != http.StatusMethodNotAllowed || r.json(t)["error"] != "method_not_allowed" {
		t.Fatalf("BREW /api = %d %s, want a JSON 405 from the API", r.status, r.body)
	}
	if after := otherRequests(t, h); after != before+1 {
		t.Errorf(`kvstack_http_requests_total{method="other"} went from %v to %v, want one more`, before, after)
	}
}

// otherRequests sums method="other" requests over both replicas, and fails
// if a made-up method became a label of its own.
func otherRequests(t *testing.T, h *harness) float64 {
	t.Helper()
	var sum float64
	for _, port := range []string{"KV_API1_ADMIN_PORT", "KV_API2_ADMIN_PORT"} {
		resp, err := http.Get("http://" + h.addr(port) + "/metrics")
		if err != nil {
			t.Fatalf("scrape %s: %v", port, err)
		}
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			line := sc.Text()
			if !strings.HasPrefix(line, "kvstack_http_requests_total{") {
				continue
			}
			if strings.Contains(line, `method="BREW"`) {
				t.Errorf("a client's method became a label: %s", line)
			}
			if strings.Contains(line, `method="other"`) {
				f := strings.Fields(line)
				v, _ := strconv.ParseFloat(f[len(f)-1], 64)
				sum += v
			}
		}
		resp.Body.Close()
	}
	return sum
}

// HEAD, which nginx routes as a read, answers what GET would without a
// body; PUT with a ?key= naming another key than its body is refused and
// writes nothing.
func TestHeadAndPutKeyRulesThroughNginx(t *testing.T) {
	h := newHarness(t)
	key := uniq("e2e-head")
	if r := h.put(t, key, "v"); r.status != http.StatusAccepted {
		t.Fatalf("PUT = %d %s", r.status, r.body)
	}
	path := "/api?key=" + url.QueryEscape(key)
	eventually(t, 20*time.Second, func() string {
		if r := h.do(t, http.MethodGet, path, nil); r.status != http.StatusOK {
			return fmt.Sprintf("GET %s = %d", key, r.status)
		}
		return ""
	})
	get, head := h.do(t, http.MethodGet, path, nil), h.do(t, http.MethodHead, path, nil)
	if head.status != http.StatusOK || len(head.body) != 0 {
		t.Errorf("HEAD = %d with %d body bytes, want 200 and none", head.status, len(head.body))
	}
	for _, name := range []string{"Content-Type", "Content-Length"} {
		if head.header.Get(name) != get.header.Get(name) {
			t.Errorf("HEAD %s %q, GET %q", name, head.header.Get(name), get.header.Get(name))
		}
	}
	if r := h.do(t, http.MethodHead, "/api?key="+url.QueryEscape(key+"-absent"), nil); r.status != http.StatusNotFound {
		t.Errorf("HEAD of an absent key = %d, want 404", r.status)
	}

	other := key + "-other"
	r := h.do(t, http.MethodPut, path, []byte(`{"key":"`+other+`","value":"w"}`))
	if r.status != http.StatusBadRequest || r.json(t)["error"] != "invalid_key" {
		t.Fatalf("PUT ?key=%s with body key %s = %d %s, want 400 invalid_key", key, other, r.status, r.body)
	}
	time.Sleep(500 * time.Millisecond) // time enough for a write to land, had one been made
	if r := h.do(t, http.MethodGet, "/api?key="+url.QueryEscape(other), nil); r.status != http.StatusNotFound {
		t.Errorf("GET %s after the refused PUT = %d, want 404", other, r.status)
	}
}
