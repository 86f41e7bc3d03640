package httpapi

import (
	"bytes"
	"context"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/kvstack/kvstack/internal/auth"
	"github.com/kvstack/kvstack/internal/auth/authtest"
	"github.com/kvstack/kvstack/internal/auth/mint"
)

// testPolicy is the repository's roles and two tenants confined to their
// prefixes.
const testPolicy = `
role_claims: [[roles]]
roles:
  admin:
    - {key_prefix: "", rights: [read, write, list]}
  reader:
    - {key_prefix: "", rights: [read, list]}
  team-a:
    - {key_prefix: "team-a/", rights: [read, write, list]}
  team-c:
    - {key_prefix: "team-c/", rights: [read, list]}
  lister:
    - {key_prefix: "", rights: [list]}
`

// The tests' signing key, the API's Authenticator trusting it, and the
// admin token every test client carries unless it says otherwise.
var (
	testIssuer *authtest.Issuer
	testAuth   *auth.Authenticator
	adminToken string
)

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	dir, err := os.MkdirTemp("", "httpapi-auth")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	if testIssuer, err = authtest.NewIn(dir, testPolicy); err != nil {
		panic(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if testAuth, err = testIssuer.Start(ctx); err != nil {
		panic(err)
	}
	if adminToken, err = testIssuer.Sign(mint.Claims{Subject: "test-admin", Roles: []string{"admin"}, TTL: time.Hour}); err != nil {
		panic(err)
	}
	return m.Run()
}

// asClient is h as a client carrying token sees it: every request without
// an Authorization header gets one.
func asClient(h http.Handler, token string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") == "" {
			r.Header.Set("Authorization", "Bearer "+token)
		}
		h.ServeHTTP(w, r)
	})
}

// newAuthHandler is the API with its own Authenticator and no client shim.
func newAuthHandler(svc Service, log zerolog.Logger) http.Handler {
	cfg := DefaultConfig()
	cfg.ListPageSize = 2
	return NewHandler(svc, testTokens, testAuth, nil, cfg, log, nil)
}

func doWith(t *testing.T, h http.Handler, authorization, method, target, body string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, target, strings.NewReader(body))
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func sign(t *testing.T, c mint.Claims) string {
	t.Helper()
	tok, err := testIssuer.Sign(c)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// A request without a valid token gets 401 with a Bearer challenge and
// changes nothing, on every data route; the probes stay open.
func TestUnauthenticatedRequestsGet401(t *testing.T) {
	svc := &fakeService{entries: map[string]string{"k": "v"}}
	h := newAuthHandler(svc, zerolog.Nop())
	expired := sign(t, mint.Claims{Subject: "s", Roles: []string{"admin"}, TTL: time.Minute, NotBefore: time.Now().Add(-time.Hour)})
	future := sign(t, mint.Claims{Subject: "s", Roles: []string{"admin"}, TTL: time.Hour, NotBefore: time.Now().Add(time.Hour)})
	wrongAud := sign(t, mint.Claims{Subject: "s", Roles: []string{"admin"}, TTL: time.Hour, Audience: "other"})
	for _, tc := range []struct {
		name, authorization, code, challenge string
	}{
		{"no token", "", "missing_token", `Bearer realm="kvstack"`},
		{"another scheme", "Basic YWRtaW46YWRtaW4=", "missing_token", `Bearer realm="kvstack"`},
		{"garbage", "Bearer garbage", "invalid_token", `error="invalid_token"`},
		{"expired", "Bearer " + expired, "invalid_token", "expired"},
		{"not yet valid", "Bearer " + future, "invalid_token", "not valid yet"},
		{"wrong audience", "Bearer " + wrongAud, "invalid_token", "aud"},
	} {
		for _, route := range []struct{ method, target, body string }{
			{"GET", "/api?key=k", ""},
			{"GET", "/api?key=absent", ""},
			{"HEAD", "/api?key=k", ""},
			{"PUT", "/api", `{"key":"k","value":"x"}`},
			{"DELETE", "/api?key=k", ""},
			{"GET", "/api/all", ""},
		} {
			rec := doWith(t, h, tc.authorization, route.method, route.target, route.body)
			if rec.Code != http.StatusUnauthorized {
				t.Fatalf("%s: %s %s = %d, want 401", tc.name, route.method, route.target, rec.Code)
			}
			if got := rec.Header().Get("WWW-Authenticate"); !strings.HasPrefix(got, "Bearer ") || !strings.Contains(got, tc.challenge) {
				t.Errorf("%s: WWW-Authenticate %q, want a Bearer challenge with %q", tc.name, got, tc.challenge)
			}
			if route.method != "HEAD" {
				if got := decodeJSON(t, rec)["error"]; got != tc.code {
					t.Errorf("%s: %s %s error %v, want %s", tc.name, route.method, route.target, got, tc.code)
				}
			}
		}
	}
	if len(svc.writes) != 0 {
		t.Errorf("refused requests wrote %+v", svc.writes)
	}
	for _, probe := range []string{"/healthz", "/readyz"} {
		if rec := doWith(t, h, "", "GET", probe, ""); rec.Code != 200 {
			t.Errorf("GET %s without a token = %d, want 200", probe, rec.Code)
		}
	}
}

// A valid token without the right gets 403, the same whether the key
// exists or not, and nothing is written.
func TestForbiddenIs403AndSaysNothingOfTheKey(t *testing.T) {
	svc := &fakeService{entries: map[string]string{"k": "v", "team-b/x": "1"}}
	h := newAuthHandler(svc, zerolog.Nop())
	reader := "Bearer " + testIssuer.Token(t, "r", "reader")
	teamA := "Bearer " + testIssuer.Token(t, "a", "team-a")
	nobody := "Bearer " + testIssuer.Token(t, "n", "unknown-role")
	for _, tc := range []struct {
		name, authorization, method, target, body string
	}{
		{"reader puts", reader, "PUT", "/api", `{"key":"k","value":"x"}`},
		{"reader deletes", reader, "DELETE", "/api?key=k", ""},
		{"team-a reads another team's key", teamA, "GET", "/api?key=team-b/x", ""},
		{"team-a reads an absent key outside its prefix", teamA, "GET", "/api?key=team-b/none", ""},
		{"team-a writes outside its prefix", teamA, "PUT", "/api", `{"key":"team-b/x","value":"x"}`},
		{"team-a deletes by body outside its prefix", teamA, "DELETE", "/api", `{"key":"team-b/x"}`},
		{"a role the policy does not name", nobody, "GET", "/api?key=k", ""},
		{"a role the policy does not name lists", nobody, "GET", "/api/all", ""},
	} {
		rec := doWith(t, h, tc.authorization, tc.method, tc.target, tc.body)
		if rec.Code != http.StatusForbidden {
			t.Fatalf("%s: %d %s, want 403", tc.name, rec.Code, rec.Body)
		}
		body := decodeJSON(t, rec)
		if body["error"] != "forbidden" {
			t.Errorf("%s: error %v, want forbidden", tc.name, body["error"])
		}
		if got := rec.Header().Get("WWW-Authenticate"); !strings.Contains(got, `error="insufficient_scope"`) {
			t.Errorf("%s: WWW-Authenticate %q", tc.name, got)
		}
	}
	// Present and absent keys get the same answer, byte for byte.
	present := doWith(t, h, teamA, "GET", "/api?key=team-b/x", "")
	absent := doWith(t, h, teamA, "GET", "/api?key=team-b/y", "")
	if !bytes.Equal(present.Body.Bytes(), absent.Body.Bytes()) {
		t.Errorf("a refusal tells keys apart: %s vs %s", present.Body, absent.Body)
	}
	if len(svc.writes) != 0 {
		t.Errorf("refused writes were published: %+v", svc.writes)
	}
	if rec := doWith(t, h, teamA, "PUT", "/api", `{"key":"team-a/x","value":"x"}`); rec.Code != 202 {
		t.Errorf("team-a writing its own key = %d %s", rec.Code, rec.Body)
	}
}

// A listing shows only the keys under prefixes the token may list and
// read, in pages and streamed, whatever the cursor says.
func TestListingStaysWithinTheTokensPrefixes(t *testing.T) {
	entries := map[string]string{}
	for _, k := range []string{"a", "team-a/1", "team-a/2", "team-a/3", "team-b/1", "team-c/1", "team-c/2", "z"} {
		entries[k] = "v"
	}
	svc := &fakeService{entries: entries}
	h := newAuthHandler(svc, zerolog.Nop())
	both := "Bearer " + sign(t, mint.Claims{Subject: "ac", Roles: []string{"team-a", "team-c"}, TTL: time.Hour})
	want := []string{"team-a/1", "team-a/2", "team-a/3", "team-c/1", "team-c/2"}

	if got := listKeysOf(t, doWith(t, h, both, "GET", "/api/all", "")); !slices.Equal(got, want) {
		t.Errorf("streamed listing %q, want %q", got, want)
	}
	var paged []string
	cursor := ""
	for range 10 {
		rec := doWith(t, h, both, "GET", "/api/all?limit=2"+cursor, "")
		page := decodeJSON(t, rec)
		paged = append(paged, listKeysOf(t, rec)...)
		next, _ := page["next_cursor"].(string)
		if next == "" {
			break
		}
		cursor = "&cursor=" + next
	}
	if !slices.Equal(paged, want) {
		t.Errorf("paged listing %q, want %q", paged, want)
	}
	for _, start := range []string{"a", "team-a/", "team-a/9", "team-b/0", "team-c/1", "y", "\U0010FFFF"} {
		cursor := base64.RawURLEncoding.EncodeToString([]byte(start))
		for _, target := range []string{"/api/all?cursor=" + cursor, "/api/all?limit=100&cursor=" + cursor} {
			for _, k := range listKeysOf(t, doWith(t, h, both, "GET", target, "")) {
				if !strings.HasPrefix(k, "team-a/") && !strings.HasPrefix(k, "team-c/") {
					t.Errorf("cursor %q: the listing shows %q", start, k)
				}
				if k <= start {
					t.Errorf("cursor %q: the listing shows %q, before it", start, k)
				}
			}
		}
	}
	lister := "Bearer " + testIssuer.Token(t, "l", "lister")
	if rec := doWith(t, h, lister, "GET", "/api/all", ""); rec.Code != http.StatusForbidden {
		t.Errorf("a token that may list but read nothing = %d, want 403", rec.Code)
	}
}

func listKeysOf(t *testing.T, rec *httptest.ResponseRecorder) []string {
	t.Helper()
	if rec.Code != 200 {
		t.Fatalf("listing = %d %s", rec.Code, rec.Body)
	}
	items, _ := decodeJSON(t, rec)["items"].([]any)
	var keys []string
	for _, it := range items {
		keys = append(keys, it.(map[string]any)["key"].(string))
	}
	return keys
}

// The access log names the token's subject; with KV_AUTH=off, /readyz says
// so and every request is served.
func TestSubjectLoggedAndAuthOffReported(t *testing.T) {
	var logs bytes.Buffer
	svc := &fakeService{entries: map[string]string{"k": "v"}}
	h := newAuthHandler(svc, zerolog.New(&logs))
	if rec := doWith(t, h, "Bearer "+adminToken, "GET", "/api?key=k", ""); rec.Code != 200 {
		t.Fatalf("GET = %d", rec.Code)
	}
	if !strings.Contains(logs.String(), `"enduser":"test-admin"`) {
		t.Errorf("the access log lacks the subject:\n%s", logs.String())
	}
	if got := decodeJSON(t, doWith(t, h, "", "GET", "/readyz", ""))["auth"]; got != "on" {
		t.Errorf("/readyz auth %v, want on", got)
	}

	off, err := auth.New(t.Context(), auth.Config{}, zerolog.Nop(), nil)
	if err != nil {
		t.Fatal(err)
	}
	hOff := NewHandler(svc, testTokens, off, nil, DefaultConfig(), zerolog.Nop(), nil)
	if rec := doWith(t, hOff, "", "GET", "/api?key=k", ""); rec.Code != 200 {
		t.Errorf("KV_AUTH=off: GET without a token = %d, want 200", rec.Code)
	}
	if got := decodeJSON(t, doWith(t, hOff, "", "GET", "/readyz", ""))["auth"]; got != "off" {
		t.Errorf("KV_AUTH=off: /readyz auth %v, want off", got)
	}
}

// A write carries its token's subject; a read with ?with=writer names it,
// to a token that may read the key, and refuses anything else.
func TestWritesCarryTheirWriter(t *testing.T) {
	svc := &fakeService{entries: map[string]string{"team-a/k": "v"}}
	h := newAuthHandler(svc, zerolog.Nop())
	teamA := "Bearer " + testIssuer.Token(t, "alice", "team-a")
	for _, req := range []struct{ method, target, body string }{
		{"PUT", "/api", `{"key":"team-a/k","value":"v"}`},
		{"PUT", "/api?wait=applied", `{"key":"team-a/k","value":"v"}`},
		{"DELETE", "/api?key=team-a/k", ""},
		{"DELETE", "/api?key=team-a/k&wait=applied", ""},
	} {
		if rec := doWith(t, h, teamA, req.method, req.target, req.body); rec.Code >= 300 {
			t.Fatalf("%s %s = %d %s", req.method, req.target, rec.Code, rec.Body)
		}
	}
	for _, op := range svc.writes {
		if op.WrittenBy != "alice" {
			t.Errorf("%s %s written by %q, want alice", op.Kind, op.Key, op.WrittenBy)
		}
	}
	rec := doWith(t, h, teamA, "GET", "/api?key=team-a/k&with=writer", "")
	if got := decodeJSON(t, rec)["written_by"]; rec.Code != 200 || got != "alice" {
		t.Errorf("GET ?with=writer = %d, written_by %v; want alice", rec.Code, got)
	}
	if _, ok := decodeJSON(t, doWith(t, h, teamA, "GET", "/api?key=team-a/k", ""))["written_by"]; ok {
		t.Errorf("a plain GET names the writer")
	}
	for target, want := range map[string]int{
		"/api?key=team-b/k&with=writer":             403,
		"/api?key=team-a/k&with=owner":              400,
		"/api?key=team-a/k&with=writer&with=writer": 400,
	} {
		if rec := doWith(t, h, teamA, "GET", target, ""); rec.Code != want {
			t.Errorf("GET %s = %d, want %d", target, rec.Code, want)
		}
	}
}
