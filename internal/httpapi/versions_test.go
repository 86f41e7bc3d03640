package httpapi

import (
	"context"
	"fmt"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/kvstack/kvstack/internal/kv"
	"github.com/kvstack/kvstack/internal/metrics"
	"github.com/kvstack/kvstack/internal/token"
)

var (
	testTokens = mustTokens("test-signing-key-of-thirty-two-bytes")
	// otherTokens is another deployment's: its tokens are forgeries here.
	otherTokens = mustTokens("another-deployments-key-32-bytes-long")
)

func mustTokens(key string) *token.Codec {
	c, err := token.New([]byte(key))
	if err != nil {
		panic(err)
	}
	return c
}

func at(micros int64) kv.Version { return kv.Version{Time: time.UnixMicro(micros).UTC()} }

// Every 202 names its operation's version, in the body and the header,
// as a token of its key.
func TestWritesCarryTheirVersion(t *testing.T) {
	svc := &fakeService{entries: map[string]string{}}
	h := newTestHandler(svc)
	for _, tc := range []struct{ method, target, body string }{
		{"PUT", "/api", `{"key":"k","value":"v"}`},
		{"DELETE", "/api?key=k", ""},
	} {
		rec := do(t, h, tc.method, tc.target, tc.body)
		got := decodeJSON(t, rec)
		op := svc.writes[len(svc.writes)-1]
		tok, _ := got["version"].(string)
		if rec.Code != 202 || tok == "" || rec.Header().Get(VersionHeader) != tok {
			t.Fatalf("%s = %d %v, header %q; want 202 with the version in both", tc.method, rec.Code, got, rec.Header().Get(VersionHeader))
		}
		if v, err := testTokens.Decode("k", tok); err != nil || v != op.Version {
			t.Errorf("%s: the token stands for %v (%v), want the op's %v", tc.method, v, err, op.Version)
		}
	}
}

// A read names the version of what it returns; a deleted key's 404, the
// delete's.
func TestReadsCarryTheirVersion(t *testing.T) {
	svc := &fakeService{entries: map[string]string{"k": "v"}, version: at(7)}
	h := newTestHandler(svc)
	rec := do(t, h, "GET", "/api?key=k", "")
	want := testTokens.Encode("k", at(7))
	if got := decodeJSON(t, rec); rec.Code != 200 || got["version"] != want || rec.Header().Get(VersionHeader) != want {
		t.Errorf("GET = %d %v, header %q; want the version %q", rec.Code, got, rec.Header().Get(VersionHeader), want)
	}

	svc.waitErr = fmt.Errorf("get: %w", &kv.NotFoundError{Version: at(9)})
	tok := testTokens.Encode("k", at(9))
	rec = do(t, h, "GET", "/api?key=k&min_version="+tok, "")
	if got := decodeJSON(t, rec); rec.Code != 404 || got["version"] != tok || rec.Header().Get(VersionHeader) != tok {
		t.Errorf("GET of a deleted key = %d %v; want 404 naming the delete's version", rec.Code, got)
	}
}

func TestMinVersionReachesTheServiceWithItsBound(t *testing.T) {
	def := kv.DefaultWaitConfig()
	tok := testTokens.Encode("k", at(5))
	for _, tc := range []struct {
		query string
		want  time.Duration
	}{
		{"", def.Timeout},
		{"&timeout=250ms", 250 * time.Millisecond},
		{"&timeout=0s", 0},
		{"&timeout=1h", def.Max},
	} {
		svc := &fakeService{entries: map[string]string{"k": "v"}, version: at(5)}
		rec := do(t, newTestHandler(svc), "GET", "/api?key=k&min_version="+tok+tc.query, "")
		if rec.Code != 200 || len(svc.waits) != 1 || svc.waits[0].min != at(5) || svc.waits[0].timeout != tc.want {
			t.Errorf("min_version%s = %d, waits %+v; want one at %v bounded by %s", tc.query, rec.Code, svc.waits, at(5), tc.want)
		}
	}
}

// Garbled and forged tokens, and the wait parameters misused, are 400s
// that reach nothing.
func TestBadWaitParameters(t *testing.T) {
	good := testTokens.Encode("k", at(5))
	for _, tc := range []struct {
		name, method, target, body, code string
	}{
		{"garbled token", "GET", "/api?key=k&min_version=not-a-token", "", "invalid_min_version"},
		{"truncated token", "GET", "/api?key=k&min_version=" + good[:len(good)-1], "", "invalid_min_version"},
		{"altered token", "GET", "/api?key=k&min_version=" + flipLast(good), "", "invalid_min_version"},
		{"forged token", "GET", "/api?key=k&min_version=" + otherTokens.Encode("k", at(5)), "", "invalid_min_version"},
		{"another key's token", "GET", "/api?key=k2&min_version=" + good, "", "invalid_min_version"},
		{"empty token", "GET", "/api?key=k&min_version=", "", "invalid_min_version"},
		{"token twice", "GET", "/api?key=k&min_version=" + good + "&min_version=" + good, "", "invalid_min_version"},
		{"timeout alone", "GET", "/api?key=k&timeout=1s", "", "invalid_timeout"},
		{"negative timeout", "GET", "/api?key=k&min_version=" + good + "&timeout=-1s", "", "invalid_timeout"},
		{"timeout not a duration", "GET", "/api?key=k&min_version=" + good + "&timeout=5", "", "invalid_timeout"},
		{"read with wait", "GET", "/api?key=k&wait=applied", "", "invalid_wait"},
		// The token, bound to a key, is read with the query; the key's
		// validity is the service's, which sees only a well-formed request.
		{"token for another key than a bad one", "GET", "/api?key=a%0Ab&min_version=" + good, "", "invalid_min_version"},
		{"bad key", "GET", "/api?key=a%0Ab", "", "invalid_key"},
		{"write with min_version", "PUT", "/api?min_version=" + good, `{"key":"k","value":"v"}`, "invalid_min_version"},
		{"wait for something else", "PUT", "/api?wait=stored", `{"key":"k","value":"v"}`, "invalid_wait"},
		{"wait twice", "DELETE", "/api?key=k&wait=applied&wait=applied", "", "invalid_wait"},
		{"write timeout alone", "DELETE", "/api?key=k&timeout=1s", "", "invalid_timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			svc := &fakeService{entries: map[string]string{"k": "v"}}
			rec := do(t, newTestHandler(svc), tc.method, tc.target, tc.body)
			if got := decodeJSON(t, rec); rec.Code != 400 || got["error"] != tc.code {
				t.Errorf("%s %s = %d %v; want 400 %s", tc.method, tc.target, rec.Code, got, tc.code)
			}
			if len(svc.waits)+len(svc.writes) != 0 {
				t.Errorf("reached the service: waits %+v, writes %+v", svc.waits, svc.writes)
			}
		})
	}
}

func flipLast(tok string) string {
	last := "A"
	if strings.HasSuffix(tok, "A") {
		last = "B"
	}
	return tok[:len(tok)-1] + last
}

// A wait that times out is a 504 naming the newest version seen (null
// when the key was never stored); beyond the waiters' cap, a 503.
func TestWaitFailures(t *testing.T) {
	tok := testTokens.Encode("k", at(5))
	newest := testTokens.Encode("k", at(3))
	for _, tc := range []struct {
		name   string
		err    error
		status int
		code   string
		ver    any
	}{
		{"timeout", &kv.NotReachedError{Newest: at(3)}, 504, "version_not_reached", newest},
		{"timeout, never stored", &kv.NotReachedError{}, 504, "version_not_reached", nil},
		{"cap", fmt.Errorf("get: %w: %w", kv.ErrTooManyWaiters, kv.ErrUnavailable), 503, "too_many_waiters", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			svc := &fakeService{waitErr: fmt.Errorf("get: %w", tc.err)}
			rec := do(t, newTestHandler(svc), "GET", "/api?key=k&min_version="+tok, "")
			got := decodeJSON(t, rec)
			if rec.Code != tc.status || got["error"] != tc.code || got["version"] != tc.ver {
				t.Errorf("= %d %v; want %d %s with version %v", rec.Code, got, tc.status, tc.code, tc.ver)
			}
			if tc.status == 503 && rec.Header().Get("Retry-After") == "" {
				t.Error("503 without Retry-After")
			}
		})
	}
}

func TestWriteThatWaits(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status kv.WriteStatus
		stored kv.Version
		code   int
	}{
		{"applied", kv.Written, kv.Version{}, 200},
		{"superseded", kv.Superseded, at(1 << 60), 200},
		{"pending", kv.Pending, kv.Version{}, 202},
	} {
		t.Run(tc.name, func(t *testing.T) {
			svc := &fakeService{waitStatus: tc.status, stored: tc.stored}
			rec := do(t, newTestHandler(svc), "PUT", "/api?wait=applied&timeout=2s", `{"key":"k","value":"v"}`)
			got := decodeJSON(t, rec)
			op := svc.writes[0]
			if rec.Code != tc.code || got["status"] != tc.status.String() || got["version"] != testTokens.Encode("k", op.Version) {
				t.Errorf("= %d %v; want %d, status %s, the op's version", rec.Code, got, tc.code, tc.status)
			}
			if svc.waits[0].timeout != 2*time.Second {
				t.Errorf("waited at most %s, want the 2s asked for", svc.waits[0].timeout)
			}
			wantStored := any(nil)
			if tc.status == kv.Superseded {
				wantStored = testTokens.Encode("k", tc.stored)
			}
			if got["stored_version"] != wantStored {
				t.Errorf("stored_version %v, want %v", got["stored_version"], wantStored)
			}
		})
	}
	svc := &fakeService{waitErr: fmt.Errorf("put: %w: %w", kv.ErrTooManyWaiters, kv.ErrUnavailable)}
	if rec := do(t, newTestHandler(svc), "DELETE", "/api?key=k&wait=applied", ""); rec.Code != 503 || len(svc.writes) != 0 {
		t.Errorf("a write beyond the waiters' cap = %d, %d published; want 503 and nothing", rec.Code, len(svc.writes))
	}
}

// Requests that wait are measured under routes of their own, so that the
// queue's lag does not pass for /api's latency.
func TestWaitsAreMeasuredApart(t *testing.T) {
	reg := prometheus.NewRegistry()
	svc := &fakeService{entries: map[string]string{"k": "v"}, version: at(5)}
	h := asClient(NewHandler(svc, testTokens, testAuth, nil, DefaultConfig(), zerolog.Nop(), metrics.NewHTTP(reg)), adminToken)
	tok := url.QueryEscape(testTokens.Encode("k", at(5)))
	for _, tc := range []struct{ method, target, body string }{
		{"GET", "/api?key=k", ""},
		{"GET", "/api?key=k&min_version=" + tok, ""},
		{"HEAD", "/api?key=k&min_version=" + tok, ""},
		{"PUT", "/api", `{"key":"k","value":"v"}`},
		{"PUT", "/api?wait=applied", `{"key":"k","value":"v"}`},
		{"DELETE", "/api?key=k&wait=applied", ""},
		{"DELETE", "/api?key=min_version%3D1", ""},
	} {
		if rec := do(t, h, tc.method, tc.target, tc.body); rec.Code >= 300 {
			t.Fatalf("%s %s = %d", tc.method, tc.target, rec.Code)
		}
	}
	got := map[string]float64{}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "kvstack_http_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			l := map[string]string{}
			for _, lp := range m.GetLabel() {
				l[lp.GetName()] = lp.GetValue()
			}
			got[l["method"]+" "+l["route"]] += m.GetCounter().GetValue()
		}
	}
	want := map[string]float64{
		"GET /api": 1, "GET /api:min_version": 1, "HEAD /api:min_version": 1,
		"PUT /api": 1, "PUT /api:wait": 1, "DELETE /api:wait": 1, "DELETE /api": 1,
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("requests by method and route: %v, want %v", got, want)
	}
}

// A client that leaves mid-wait is answered 499 (for the logs), not
// counted as a failure of the service.
func TestClientGoneIs499(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	svc := &fakeService{waitErr: fmt.Errorf("get: %w", ctx.Err())}
	req := httptest.NewRequestWithContext(ctx, "GET", "/api?key=k&min_version="+testTokens.Encode("k", at(5)), nil)
	rec := httptest.NewRecorder()
	newTestHandler(svc).ServeHTTP(rec, req)
	if rec.Code != StatusClientClosedRequest {
		t.Errorf("= %d %s, want 499", rec.Code, rec.Body)
	}
}
