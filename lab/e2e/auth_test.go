//go:build e2e

package e2e

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/kvstack/kvstack/internal/auth/mint"
	"github.com/kvstack/kvstack/lab/native"
)

// sign is a token of the stack's own key (make token's) with claims c,
// its issuer and audience the stack's unless c says otherwise.
func (h *harness) sign(tb testing.TB, c mint.Claims) string {
	tb.Helper()
	k, err := native.SigningKey(h.s)
	if err != nil {
		tb.Fatal(err)
	}
	if c.Issuer == "" {
		c.Issuer = h.s.Get("KV_AUTH_ISSUER")
	}
	if c.Audience == "" {
		c.Audience = mint.LocalAudience
	}
	if c.TTL == 0 {
		c.TTL = time.Hour
	}
	tok, err := k.Sign(c)
	if err != nil {
		tb.Fatal(err)
	}
	return tok
}

// as sends method path through nginx with this Authorization header (none
// when empty), on a client that carries no token of its own.
func (h *harness) as(tb testing.TB, authorization, method, path string, body []byte) response {
	tb.Helper()
	var rd *bytes.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	} else {
		rd = bytes.NewReader(nil)
	}
	req, err := http.NewRequest(method, h.nginx+path, rd)
	if err != nil {
		tb.Fatal(err)
	}
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: h.trust(tb)}}
	defer client.CloseIdleConnections()
	resp, err := client.Do(req)
	if err != nil {
		tb.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	return response{status: resp.StatusCode, header: resp.Header, body: b.Bytes()}
}

// forged signs claims with method and key, in a token naming the stack's kid.
func forged(tb testing.TB, method jwt.SigningMethod, key any, kid string, claims jwt.MapClaims) string {
	tb.Helper()
	t := jwt.NewWithClaims(method, claims)
	t.Header["kid"] = kid
	s, err := t.SignedString(key)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// The 401 matrix through nginx: every token the API must refuse, on every
// data route, gets 401 with a Bearer challenge and the JSON error shape,
// and writes nothing.
func TestAuth401Matrix(t *testing.T) {
	h := newHarness(t)
	key := uniq("e2e-auth401")
	if r := h.put(t, key, "kept"); r.status != http.StatusAccepted {
		t.Fatalf("PUT with the admin token: %d %s", r.status, r.body)
	}
	k, err := native.SigningKey(h.s)
	if err != nil {
		t.Fatal(err)
	}
	jwks, err := os.ReadFile(filepath.Join(h.s.AuthDir(), mint.JWKSFile))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	good := jwt.MapClaims{"iss": h.s.Get("KV_AUTH_ISSUER"), "aud": mint.LocalAudience, "sub": "forger",
		"roles": []string{"admin"}, "iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Hour).Unix()}
	stranger, err := mint.NewEd25519()
	if err != nil {
		t.Fatal(err)
	}
	unknownKID, err := stranger.Sign(mint.Claims{Issuer: h.s.Get("KV_AUTH_ISSUER"), Audience: mint.LocalAudience,
		Subject: "stranger", Roles: []string{"admin"}, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	pub := k.Public().(ed25519.PublicKey)
	cases := []struct{ name, authorization, code string }{
		{"no token", "", "missing_token"},
		{"another scheme", "Basic YWRtaW46YWRtaW4=", "missing_token"},
		{"garbage", "Bearer garbage", "invalid_token"},
		{"alg none", "Bearer " + forged(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, k.ID, good), "invalid_token"},
		{"HS256 keyed with the public key", "Bearer " + forged(t, jwt.SigningMethodHS256, []byte(pub), k.ID, good), "invalid_token"},
		{"HS256 keyed with the JWKS", "Bearer " + forged(t, jwt.SigningMethodHS256, jwks, k.ID, good), "invalid_token"},
		{"expired", "Bearer " + h.sign(t, mint.Claims{Subject: "s", Roles: []string{"admin"}, TTL: time.Minute, NotBefore: now.Add(-2 * time.Hour)}), "invalid_token"},
		{"not yet valid", "Bearer " + h.sign(t, mint.Claims{Subject: "s", Roles: []string{"admin"}, NotBefore: now.Add(time.Hour)}), "invalid_token"},
		{"wrong audience", "Bearer " + h.sign(t, mint.Claims{Subject: "s", Roles: []string{"admin"}, Audience: "another-api"}), "invalid_token"},
		{"wrong issuer", "Bearer " + h.sign(t, mint.Claims{Subject: "s", Roles: []string{"admin"}, Issuer: "https://evil.example"}), "invalid_token"},
		{"unknown kid", "Bearer " + unknownKID, "invalid_token"},
	}
	body, _ := json.Marshal(map[string]string{"key": key, "value": "overwritten"})
	routes := []struct {
		method, path string
		body         []byte
	}{
		{http.MethodGet, "/api?key=" + url.QueryEscape(key), nil},
		{http.MethodGet, "/api?key=" + url.QueryEscape(key+"-absent"), nil},
		{http.MethodPut, "/api", body},
		{http.MethodDelete, "/api?key=" + url.QueryEscape(key), nil},
		{http.MethodGet, "/api/all?limit=5", nil},
	}
	n := 0
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, rt := range routes {
				n++
				r := h.as(t, c.authorization, rt.method, rt.path, rt.body)
				if r.status != http.StatusUnauthorized {
					t.Fatalf("%s %s: %d %s, want 401", rt.method, rt.path, r.status, r.body)
				}
				ch := r.header.Get("WWW-Authenticate")
				if !strings.HasPrefix(ch, `Bearer realm="kvstack"`) || (c.code == "invalid_token") != strings.Contains(ch, `error="invalid_token"`) {
					t.Errorf("%s %s: WWW-Authenticate %q", rt.method, rt.path, ch)
				}
				if got := r.json(t)["error"]; got != c.code {
					t.Errorf("%s %s: error %v, want %s", rt.method, rt.path, got, c.code)
				}
			}
		})
	}
	t.Logf("401 matrix: %d tokens x %d routes = %d requests", len(cases), len(routes), n)
	time.Sleep(time.Second) // a refused write, had one been published, would be applied by now
	if r := h.do(t, http.MethodGet, "/api?key="+url.QueryEscape(key), nil); r.status != http.StatusOK || r.json(t)["value"] != "kept" {
		t.Errorf("the key after the refused writes: %d %s, want kept", r.status, r.body)
	}
}

// The 403 matrix through nginx: a read-only role writing, a tenant outside
// its prefix, a listing across prefixes, cursors crafted to escape.
func TestAuth403Matrix(t *testing.T) {
	h := newHarness(t)
	run := uniq("e2e")
	aKey, bKey := "team-a/"+run+"/1", "team-b/"+run+"/1"
	for _, k := range []string{aKey, "team-a/" + run + "/2", bKey, run + "-outside"} {
		if r := h.put(t, k, "v", "X-Test", "seed"); r.status != http.StatusAccepted {
			t.Fatalf("seed %s: %d %s", k, r.status, r.body)
		}
	}
	eventually(t, 10*time.Second, func() string {
		if r := h.do(t, http.MethodGet, "/api?key="+url.QueryEscape(run+"-outside"), nil); r.status != http.StatusOK {
			return "seeded keys not applied yet"
		}
		return ""
	})
	reader := "Bearer " + h.sign(t, mint.Claims{Subject: "e2e-reader", Roles: []string{"reader"}})
	teamA := "Bearer " + h.sign(t, mint.Claims{Subject: "e2e-team-a", Roles: []string{"team-a"}})
	put := func(key string) []byte { b, _ := json.Marshal(map[string]string{"key": key, "value": "x"}); return b }
	q := func(key string) string { return "/api?key=" + url.QueryEscape(key) }

	cases := []struct {
		name, authorization, method, path string
		body                              []byte
	}{
		{"reader puts", reader, http.MethodPut, "/api", put(aKey)},
		{"reader deletes", reader, http.MethodDelete, q(aKey), nil},
		{"reader puts and waits", reader, http.MethodPut, "/api?wait=applied", put(aKey)},
		{"team-a reads team-b's key", teamA, http.MethodGet, q(bKey), nil},
		{"team-a reads an absent key of team-b", teamA, http.MethodGet, q("team-b/" + run + "/absent"), nil},
		{"team-a heads team-b's key", teamA, http.MethodHead, q(bKey), nil},
		{"team-a puts into team-b", teamA, http.MethodPut, "/api", put(bKey)},
		{"team-a deletes in team-b", teamA, http.MethodDelete, q(bKey), nil},
		{"team-a reads outside every prefix", teamA, http.MethodGet, q(run + "-outside"), nil},
		{"team-a reads a key that only looks like its prefix", teamA, http.MethodGet, q("team-a" + run), nil},
	}
	for _, c := range cases {
		r := h.as(t, c.authorization, c.method, c.path, c.body)
		if r.status != http.StatusForbidden {
			t.Errorf("%s: %d %s, want 403", c.name, r.status, r.body)
			continue
		}
		if c.method != http.MethodHead && r.json(t)["error"] != "forbidden" {
			t.Errorf("%s: body %s, want error forbidden", c.name, r.body)
		}
		if !strings.Contains(r.header.Get("WWW-Authenticate"), `error="insufficient_scope"`) {
			t.Errorf("%s: WWW-Authenticate %q", c.name, r.header.Get("WWW-Authenticate"))
		}
	}
	present, absent := h.as(t, teamA, http.MethodGet, q(bKey), nil), h.as(t, teamA, http.MethodGet, q("team-b/"+run+"/absent"), nil)
	if !bytes.Equal(present.body, absent.body) {
		t.Errorf("the refusal tells a present key from an absent one: %s vs %s", present.body, absent.body)
	}
	if r := h.as(t, teamA, http.MethodGet, q(aKey), nil); r.status != http.StatusOK {
		t.Errorf("team-a reading its own key: %d %s", r.status, r.body)
	}

	// Listings: streamed, paged, and from crafted cursors, only team-a/.
	listing := 0
	check := func(what, path string) []string {
		listing++
		r := h.as(t, teamA, http.MethodGet, path, nil)
		if r.status != http.StatusOK {
			t.Fatalf("%s: %d %s", what, r.status, r.body)
		}
		var page struct {
			Items []struct{ Key string }
		}
		if err := json.Unmarshal(r.body, &page); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		var keys []string
		for _, it := range page.Items {
			if !strings.HasPrefix(it.Key, "team-a/") {
				t.Errorf("%s shows %q, outside team-a/", what, it.Key)
			}
			keys = append(keys, it.Key)
		}
		return keys
	}
	if keys := check("the streamed listing", "/api/all"); !contains(keys, aKey) {
		t.Errorf("the streamed listing lacks team-a's own %s", aKey)
	}
	for _, from := range []string{"", "a", "team-", "team-a", "team-a/" + run, "team-a0", "team-b/", "team-b/" + run, "z", "\U0010FFFF"} {
		cursor := ""
		if from != "" {
			cursor = "&cursor=" + base64.RawURLEncoding.EncodeToString([]byte(from))
		}
		check("a page from cursor "+from, "/api/all?limit=1000"+cursor)
		if from != "" {
			check("a stream from cursor "+from, "/api/all?cursor="+base64.RawURLEncoding.EncodeToString([]byte(from)))
		}
	}
	if r := h.as(t, "Bearer "+h.sign(t, mint.Claims{Subject: "nobody", Roles: []string{"kv:list"}}), http.MethodGet, "/api/all", nil); r.status != http.StatusForbidden {
		t.Errorf("a token that may list but read nothing: %d, want 403", r.status)
	}
	t.Logf("403 matrix: %d refusals, %d confined listings, 1 listing refused", len(cases), listing)
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}
