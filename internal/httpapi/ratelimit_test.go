package httpapi

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"

	"github.com/kvstack/kvstack/internal/kv"
	"github.com/kvstack/kvstack/internal/metrics"
)

// A client (a token's subject) gets its burst, then 429 rate_limited with a
// Retry-After of the seconds until its bucket has room, in the JSON error
// shape and measured; another client is not held back by it, and the
// probes are not limited.
func TestRateLimitPerClient(t *testing.T) {
	cfg := DefaultConfig()
	cfg.RateLimit, cfg.RateBurst = 0.1, 3 // one request in ten seconds
	reg := prometheus.NewRegistry()
	m := metrics.NewHTTP(reg)
	svc := &fakeService{entries: map[string]string{"k": "v"}}
	h := NewHandler(svc, testTokens, testAuth, nil, cfg, zerolog.Nop(), m)
	alice := "Bearer " + testIssuer.Token(t, "alice", "admin")
	bob := "Bearer " + testIssuer.Token(t, "bob", "admin")

	for i := range cfg.RateBurst {
		if rec := doWith(t, h, alice, "GET", "/api?key=k", ""); rec.Code != 200 {
			t.Fatalf("alice's request %d of a burst of %d = %d, want 200", i+1, cfg.RateBurst, rec.Code)
		}
	}
	rec := doWith(t, h, alice, "PUT", "/api", `{"key":"k","value":"w"}`)
	if rec.Code != http.StatusTooManyRequests {
		t.Fatalf("alice past her burst = %d, want 429", rec.Code)
	}
	if got := decodeJSON(t, rec)["error"]; got != "rate_limited" {
		t.Errorf("429 error %v, want rate_limited", got)
	}
	if got := rec.Header().Get("Retry-After"); got != "10" {
		t.Errorf("Retry-After %q, want 10 (a token every ten seconds)", got)
	}
	if len(svc.writes) != 0 {
		t.Errorf("a refused PUT reached the service: %v", svc.writes)
	}
	want := "# HELP kvstack_http_rate_limited_total Requests refused with 429 because their client (a token's subject) sent more than KV_RATE_LIMIT a second to this replica.\n# TYPE kvstack_http_rate_limited_total counter\nkvstack_http_rate_limited_total 1\n"
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "kvstack_http_rate_limited_total"); err != nil {
		t.Errorf("the refusal is not counted: %v", err)
	}
	if rec := doWith(t, h, bob, "GET", "/api?key=k", ""); rec.Code != 200 {
		t.Errorf("bob while alice is limited = %d, want 200", rec.Code)
	}
	if rec := doWith(t, h, alice, "GET", "/readyz", ""); rec.Code != 200 {
		t.Errorf("/readyz for a limited client = %d, want 200", rec.Code)
	}
}

// The buckets held are bounded by KV_RATE_CLIENTS: a new client pushes
// out the one seen least recently.
func TestRateLimitHoldsBoundedBuckets(t *testing.T) {
	cfg := DefaultConfig()
	cfg.RateClients = 2
	limits := newClientLimits(cfg)
	now := time.Now()
	for i := range 5 {
		if _, ok := limits.admit(fmt.Sprint("client-", i), now); !ok {
			t.Fatalf("client-%d's first request refused", i)
		}
	}
	if got := limits.buckets.Len(); got != 2 {
		t.Errorf("buckets held %d, want KV_RATE_CLIENTS 2", got)
	}
	if !limits.buckets.Contains("client-4") || limits.buckets.Contains("client-0") {
		t.Errorf("buckets held %v, want the two seen last", limits.buckets.Keys())
	}
}

// A wait carries its client to the waiters, and a client past its share of
// them gets 429 rate_limited with Retry-After (the replica's cap, 503).
func TestWaitsCountAgainstTheirClient(t *testing.T) {
	svc := &fakeService{entries: map[string]string{"k": "v"}, version: at(7)}
	h := newAuthHandler(svc, zerolog.Nop())
	alice := "Bearer " + testIssuer.Token(t, "alice", "admin")
	tok := testTokens.Encode("k", at(7))
	if rec := doWith(t, h, alice, "GET", "/api?key=k&min_version="+tok, ""); rec.Code != 200 {
		t.Fatalf("GET ?min_version= = %d %s", rec.Code, rec.Body)
	}
	if len(svc.waits) != 1 || svc.waits[0].client != "alice" {
		t.Errorf("the wait reached the service as %+v, want client alice", svc.waits)
	}
	for err, want := range map[error]int{
		fmt.Errorf("watch: %w", kv.ErrTooManyClientWaiters): http.StatusTooManyRequests,
		fmt.Errorf("watch: %w", kv.ErrTooManyWaiters):       http.StatusServiceUnavailable,
	} {
		svc.waitErr = err
		rec := doWith(t, h, alice, "PUT", "/api?wait=applied", `{"key":"k","value":"w"}`)
		if rec.Code != want || rec.Header().Get("Retry-After") == "" {
			t.Errorf("%v: %d, Retry-After %q; want %d with one", err, rec.Code, rec.Header().Get("Retry-After"), want)
		}
	}
}
