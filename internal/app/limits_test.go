package app

import (
	"net/http"
	"testing"
)

// A subject past KV_RATE_LIMIT's burst gets 429 rate_limited with
// Retry-After from the real API, and another subject is still served.
func TestRateLimitPerSubject(t *testing.T) {
	s := newStack(t)
	s.apiCfg.HTTP.RateLimit, s.apiCfg.HTTP.RateBurst = 0.1, 2
	s.startAPI()
	for i := range 2 {
		if r := s.do("GET", "/api?key=k", ""); r.status != http.StatusNotFound {
			t.Fatalf("request %d of the burst = %d %v, want 404", i+1, r.status, r.body)
		}
	}
	r := s.do("PUT", "/api", s.putBody("k", "v"))
	if r.status != http.StatusTooManyRequests || r.body["error"] != "rate_limited" || r.header.Get("Retry-After") != "10" {
		t.Errorf("past the burst = %d %v, Retry-After %q; want 429 rate_limited, Retry-After 10", r.status, r.body, r.header.Get("Retry-After"))
	}
	if n := gauge(t, s.api, "kvstack_http_rate_limited_total"); n != 1 {
		t.Errorf("kvstack_http_rate_limited_total = %v, want 1", n)
	}
	if r := s.doWith(authtestClient(s, "other", "admin"), "GET", "/api?key=k", ""); r.status != http.StatusNotFound {
		t.Errorf("another subject = %d %v, want 404", r.status, r.body)
	}
}

// One subject holds at most KV_MAX_WAITERS_PER_CLIENT of a replica's
// waiters: its next wait gets 429 rate_limited with Retry-After, while
// another subject still waits.
func TestWaitersSharedPerSubject(t *testing.T) {
	s := newStack(t)
	s.apiCfg.Wait.MaxWaiters, s.apiCfg.Wait.MaxWaitersPerClient = 10, 1
	s.startAPI() // no consumer: nothing is applied, so a wait lasts its bound
	w := s.do("PUT", "/api", s.putBody("k", "v"))
	cut := holdAWait(t, s, "k", w)

	r := s.do("GET", getAtLeast("k", tokenOf(t, w), ""), "")
	if r.status != http.StatusTooManyRequests || r.body["error"] != "rate_limited" || r.header.Get("Retry-After") == "" {
		t.Errorf("the subject's second wait = %d %v, Retry-After %q; want 429 rate_limited with Retry-After", r.status, r.body, r.header.Get("Retry-After"))
	}
	other := authtestClient(s, "other", "admin")
	if r := s.doWith(other, "GET", getAtLeast("k", tokenOf(t, w), "&timeout=100ms"), ""); r.status != http.StatusGatewayTimeout {
		t.Errorf("another subject's wait = %d %v, want 504 (it waited, and nothing was applied)", r.status, r.body)
	}
	cut()
	waitGauge(t, s.api, "kvstack_waiters", 0)
}
