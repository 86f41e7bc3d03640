package nginxtest_test

import (
	"io"
	"net/http"
	"testing"

	"github.com/kvstack/kvstack/lab/nginxtest"
)

// Trace context from a client is dropped at the edge unless the client is
// one NGINX_TRACE_TRUSTED lists; X-Real-IP is the address nginx saw,
// whatever the client sent as X-Real-IP or X-Forwarded-For.
func TestEdgeDropsUntrustedTraceContext(t *testing.T) {
	if testing.Short() {
		t.Skip("runs nginx; not run with -short (make test runs it)")
	}
	const (
		traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
		tracestate  = "vendor=opaque"
		baggage     = "user=mallory"
	)
	for _, tc := range []struct {
		name    string
		trusted string
		kept    bool
	}{
		{"by default", "# nobody", false},
		{"from another source than the trusted", "192.0.2.0/24 1;", false},
		{"from a trusted source", "127.0.0.0/8 1;", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := nginxtest.StartReplica(t)
			e := nginxtest.StartEdge(t, r.Addr, r.Addr, map[string]string{"NGINX_TRACE_TRUSTED": tc.trusted})
			req, err := http.NewRequest(http.MethodGet, e.URL+"/api?key=k", nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Authorization", "Bearer "+nginxtest.Token)
			req.Header.Set("traceparent", traceparent)
			req.Header.Set("tracestate", tracestate)
			req.Header.Set("baggage", baggage)
			req.Header.Set("X-Real-IP", "203.0.113.66")
			req.Header.Set("X-Forwarded-For", "203.0.113.66")
			resp, err := e.Client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("GET through the edge: %d", resp.StatusCode)
			}
			h := r.LastHeader.Load()
			if h == nil {
				t.Fatal("the replica read no request")
			}
			for name, sent := range map[string]string{"traceparent": traceparent, "tracestate": tracestate, "baggage": baggage} {
				got, want := h.Get(name), ""
				if tc.kept {
					want = sent
				}
				if got != want || (!tc.kept && len(h.Values(name)) != 0) {
					t.Errorf("the replica got %s %q, want %q", name, got, want)
				}
			}
			if got := h.Get("X-Real-IP"); got != "127.0.0.1" {
				t.Errorf("the replica got X-Real-IP %q, want the address nginx saw, 127.0.0.1", got)
			}
		})
	}
}
