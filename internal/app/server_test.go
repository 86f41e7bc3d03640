package app

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/kvstack/kvstack/internal/auth/authtest"
	"github.com/kvstack/kvstack/internal/httpapi"
	"github.com/kvstack/kvstack/internal/kv"
	"github.com/kvstack/kvstack/internal/metrics"
	"github.com/kvstack/kvstack/internal/token"
)

// The API's servers as RunAPI assembles them, without their dependencies
// (the requests below never reach the service): data and admin.
func newTestServer(t *testing.T) (data, admin *httptest.Server) {
	t.Helper()
	reg := metrics.New()
	svc := kv.NewService(nil, nil, nil, kv.DefaultLimits(), zerolog.Nop())
	tokens, err := token.New([]byte(strings.Repeat("k", token.MinKeyBytes)))
	if err != nil {
		t.Fatal(err)
	}
	authn := authtest.New(t, "").Authenticator(t)
	api := httpapi.NewHandler(svc, tokens, authn, nil, httpapi.DefaultConfig(), zerolog.Nop(), metrics.NewHTTP(reg))
	data = httptest.NewServer(api)
	t.Cleanup(data.Close)
	admin = httptest.NewServer(adminHandler(reg))
	t.Cleanup(admin.Close)
	return data, admin
}

// The data port serves none of the admin endpoints: 404, as any path the
// API does not route; the admin port serves them.
func TestAdminEndpointsAreNotOnTheDataPort(t *testing.T) {
	data, admin := newTestServer(t)
	for _, path := range []string{"/metrics", "/debug/pprof/", "/debug/pprof/cmdline", "/debug/vars"} {
		resp, err := http.Get(data.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("data port GET %s = %d, want 404", path, resp.StatusCode)
		}
		resp, err = http.Get(admin.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("admin port GET %s = %d, want 200", path, resp.StatusCode)
		}
	}
}

// A made-up method reaches the API's middleware: a JSON 405 with the trace's
// traceparent, measured as method "other" (never the client's word).
func TestMadeUpMethodIsMeasuredAsOther(t *testing.T) {
	srv, admin := newTestServer(t)
	for _, method := range []string{"FOO", "BREW"} {
		req, err := http.NewRequest(method, srv.URL+"/api?key=a", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var body map[string]string
		err = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed || err != nil || body["error"] != "method_not_allowed" {
			t.Fatalf("%s /api = %d %v (%v), want a JSON 405", method, resp.StatusCode, body, err)
		}
		if tp := resp.Header.Get("traceparent"); tp == "" {
			t.Errorf("%s /api: no traceparent on the 405", method)
		}
	}

	exposition := scrape(t, admin.URL, false)
	want := `kvstack_http_requests_total{method="other",route="unmatched",status_class="4xx"} 2`
	if !strings.Contains(exposition, want) {
		t.Errorf("/metrics lacks %s:\n%s", want, grepLines(exposition, "kvstack_http_requests_total"))
	}
	for _, m := range []string{"FOO", "BREW"} {
		if strings.Contains(exposition, `method="`+m+`"`) {
			t.Errorf("a client's method %s became a label", m)
		}
	}
	for _, s := range spans.Ended() {
		if name := s.Name(); strings.HasPrefix(name, "FOO ") || strings.HasPrefix(name, "BREW ") {
			t.Errorf("a client's method named a span: %q", name)
		}
	}
}

func grepLines(text, substr string) string {
	var out []string
	for _, line := range strings.Split(text, "\n") {
		if strings.Contains(line, substr) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}

// The traceparent of an answer names a span that exists: the API's answers
// carry their server span's, which is recorded; the probes, which are not
// traced on purpose (they would drown the traces that matter), and the admin
// endpoints carry none rather than one that names nothing.
func TestTraceparentNamesARecordedSpan(t *testing.T) {
	srv, admin := newTestServer(t)
	resp, err := http.Get(admin.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if tp := resp.Header.Get("traceparent"); tp != "" {
		t.Errorf("GET /metrics on the admin port: traceparent %q, but it is not traced", tp)
	}
	for _, tc := range []struct {
		method, path string
		traced       bool
	}{
		{"GET", "/api?key=", true},
		{"HEAD", "/api?key=", true},
		{"PUT", "/api", true},
		{"FOO", "/api", true},
		{"GET", "/nope", true},
		{"GET", "/healthz", false},
		{"HEAD", "/healthz", false},
		{"GET", "/readyz", false},
	} {
		req, err := http.NewRequest(tc.method, srv.URL+tc.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		tp := resp.Header.Get("traceparent")
		if !tc.traced {
			if tp != "" {
				t.Errorf("%s %s: traceparent %q, but it is not traced", tc.method, tc.path, tp)
			}
			continue
		}
		parts := strings.Split(tp, "-")
		if len(parts) != 4 {
			t.Errorf("%s %s: traceparent %q, want a W3C one", tc.method, tc.path, tp)
			continue
		}
		if !recorded(parts[1], parts[2]) {
			t.Errorf("%s %s: traceparent %s names no recorded span", tc.method, tc.path, tp)
		}
	}
}

// recorded reports whether the span ended, waiting a little: the server
// ends it after the client has its answer.
func recorded(traceID, spanID string) bool {
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		for _, s := range spans.Ended() {
			if sc := s.SpanContext(); sc.TraceID().String() == traceID && sc.SpanID().String() == spanID {
				return true
			}
		}
	}
	return false
}
