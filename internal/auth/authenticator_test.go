package auth

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/kvstack/kvstack/internal/auth/mint"
	"github.com/kvstack/kvstack/internal/metrics"
)

func TestAuthenticateAccepts(t *testing.T) {
	f := newFixture(t)
	es := mustKey(t, mint.NewES256)
	f.writeJWKS(t, f.key, es)
	a := f.auth(t)
	for _, tc := range []struct {
		name    string
		key     *mint.Key
		claims  mint.Claims
		header  string // the Authorization line's scheme, "Bearer" when empty
		subject string
	}{
		{name: "EdDSA", key: f.key, claims: f.claims("alice", "team-a"), subject: "alice"},
		{name: "ES256", key: es, claims: f.claims("svc@clients", "team-a"), subject: "svc@clients"},
		{name: "scheme in lower case", key: f.key, claims: f.claims("bob", "team-a"), header: "bearer", subject: "bob"},
		{name: "aud as a list", key: f.key, subject: "carol", claims: withExtra(f.claims("carol", "team-a"), "aud", []string{"other", testAudience})},
		{name: "expired within the leeway", key: f.key, subject: "dan",
			claims: mint.Claims{Issuer: testIssuer, Audience: testAudience, Subject: "dan", Roles: []string{"team-a"},
				NotBefore: f.clock.now().Add(-time.Hour - 10*time.Second), TTL: time.Hour}},
		{name: "nbf within the leeway", key: f.key, subject: "erin",
			claims: mint.Claims{Issuer: testIssuer, Audience: testAudience, Subject: "erin", Roles: []string{"team-a"},
				NotBefore: f.clock.now().Add(10 * time.Second), TTL: time.Hour}},
		{name: "no kid: the set's keys are tried", key: f.key, subject: "frank", claims: f.claims("frank", "team-a")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			token := mustSign(t, tc.key, tc.claims)
			if tc.name == "no kid: the set's keys are tried" {
				token = withoutKID(t, tc.key, tc.claims)
			}
			scheme := tc.header
			if scheme == "" {
				scheme = "Bearer"
			}
			r := bearerRequest("")
			r.Header.Set("Authorization", scheme+" "+token)
			p, err := a.Authenticate(r)
			if err != nil {
				t.Fatalf("Authenticate: %v", err)
			}
			if p.Subject != tc.subject {
				t.Errorf("subject %q, want %q", p.Subject, tc.subject)
			}
			if !p.Allows(Write, "team-a/1") || p.Allows(Read, "team-b/1") {
				t.Errorf("rights of team-a: write team-a/1 %v, read team-b/1 %v", p.Allows(Write, "team-a/1"), p.Allows(Read, "team-b/1"))
			}
		})
	}
}

func withExtra(c mint.Claims, name string, v any) mint.Claims {
	extra := map[string]any{}
	for k, x := range c.Extra {
		extra[k] = x
	}
	extra[name] = v
	c.Extra = extra
	return c
}

// withoutKID signs c with k's key but names no kid. mint always names one,
// so the token is re-signed here from its parts.
func withoutKID(t *testing.T, k *mint.Key, c mint.Claims) string {
	t.Helper()
	parsed, _, err := jwt.NewParser().ParseUnverified(mustSign(t, k, c), jwt.MapClaims{})
	if err != nil {
		t.Fatal(err)
	}
	delete(parsed.Header, "kid")
	priv := signerOf(t, k)
	s, err := parsed.SignedString(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// signerOf recovers k's private key by writing it out and reading it back.
func signerOf(t *testing.T, k *mint.Key) any {
	t.Helper()
	path := t.TempDir() + "/k.pem"
	if err := k.WritePrivate(path); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(path)
	block, _ := pem.Decode(raw)
	priv, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return priv
}

// The 401 matrix: every token that is absent, malformed, badly signed,
// signed with a refused algorithm, out of its time, or not meant for this
// API. Each is refused with the right error and challenge, and counted.
func TestAuthenticateRefuses(t *testing.T) {
	f := newFixture(t)
	a := f.auth(t)
	good := f.claims("mallory", "admin")
	stranger := mustKey(t, mint.NewEd25519)
	pub := f.key.Public().(ed25519.PublicKey)
	pubDER, _ := x509.MarshalPKIXPublicKey(pub)
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	jwks, _ := os.ReadFile(f.cfg.JWKSFile)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	signed := mustSign(t, f.key, good)
	parts := strings.Split(signed, ".")

	for _, tc := range []struct {
		name   string
		header []string // Authorization values
		code   string
		msg    string // part of the message
	}{
		{"no header", nil, "missing_token", "Authorization: Bearer"},
		{"another scheme", []string{"Basic YWxhZGRpbjpvcGVuc2VzYW1l"}, "missing_token", ""},
		{"scheme without a space", []string{"Bearer" + signed}, "missing_token", ""},
		{"empty token", []string{"Bearer "}, "invalid_token", "empty"},
		{"scheme alone", []string{"Bearer"}, "invalid_token", "empty"},
		{"two headers", []string{"Bearer " + signed, "Bearer " + signed}, "invalid_token", "more than one"},
		{"garbage", []string{"Bearer garbage"}, "invalid_token", "well-formed"},
		{"three garbage parts", []string{"Bearer a.b.c"}, "invalid_token", "well-formed"},
		{"longer than 8 KiB", []string{"Bearer " + strings.Repeat("a", maxTokenBytes+1)}, "invalid_token", "8 KiB"},
		{"alg none", []string{"Bearer " + forge(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, f.key.ID, good)}, "invalid_token", "EdDSA or ES256"},
		{"alg none, empty signature", []string{"Bearer " + parts[0] + "." + parts[1] + "."}, "invalid_token", ""},
		{"HS256 keyed with the raw public key", []string{"Bearer " + forge(t, jwt.SigningMethodHS256, []byte(pub), f.key.ID, good)}, "invalid_token", "EdDSA or ES256"},
		{"HS256 keyed with the public key's PEM", []string{"Bearer " + forge(t, jwt.SigningMethodHS256, pubPEM, f.key.ID, good)}, "invalid_token", "EdDSA or ES256"},
		{"HS256 keyed with the JWKS", []string{"Bearer " + forge(t, jwt.SigningMethodHS256, jwks, f.key.ID, good)}, "invalid_token", "EdDSA or ES256"},
		{"RS256", []string{"Bearer " + forge(t, jwt.SigningMethodRS256, rsaKey, f.key.ID, good)}, "invalid_token", "EdDSA or ES256"},
		{"unknown kid", []string{"Bearer " + mustSign(t, stranger, good)}, "invalid_token", "EdDSA or ES256"},
		{"a stranger's key under our kid", []string{"Bearer " + forgeKID(t, stranger, f.key.ID, good)}, "invalid_token", "EdDSA or ES256"},
		{"signature of another token", []string{"Bearer " + parts[0] + "." + parts[1] + "." + strings.Split(mustSign(t, f.key, f.claims("x", "admin")), ".")[2]}, "invalid_token", "EdDSA or ES256"},
		{"claims changed after signing", []string{"Bearer " + parts[0] + "." + strings.Split(mustSign(t, f.key, f.claims("root", "admin")), ".")[1] + "." + parts[2]}, "invalid_token", "EdDSA or ES256"},
		{"expired", []string{"Bearer " + mustSign(t, f.key, mint.Claims{Issuer: testIssuer, Audience: testAudience, Subject: "m", Roles: []string{"admin"}, NotBefore: f.clock.now().Add(-2 * time.Hour), TTL: time.Hour})}, "invalid_token", "expired"},
		{"not valid yet", []string{"Bearer " + mustSign(t, f.key, mint.Claims{Issuer: testIssuer, Audience: testAudience, Subject: "m", Roles: []string{"admin"}, NotBefore: f.clock.now().Add(time.Minute), TTL: time.Hour})}, "invalid_token", "not valid yet"},
		{"wrong audience", []string{"Bearer " + mustSign(t, f.key, withExtra(good, "aud", "billing"))}, "invalid_token", "aud"},
		{"no audience", []string{"Bearer " + mustSign(t, f.key, withExtra(good, "aud", nil))}, "invalid_token", "required claim"},
		{"wrong issuer", []string{"Bearer " + mustSign(t, f.key, withExtra(good, "iss", "https://evil.test"))}, "invalid_token", "iss"},
		{"no issuer", []string{"Bearer " + mustSign(t, f.key, withExtra(good, "iss", nil))}, "invalid_token", "required claim"},
		{"no exp", []string{"Bearer " + mustSign(t, f.key, withExtra(good, "exp", nil))}, "invalid_token", "required claim"},
		{"exp not a number", []string{"Bearer " + mustSign(t, f.key, withExtra(good, "exp", "tomorrow"))}, "invalid_token", ""},
		{"no subject", []string{"Bearer " + mustSign(t, f.key, withExtra(good, "sub", nil))}, "invalid_token", "sub"},
		{"empty subject", []string{"Bearer " + mustSign(t, f.key, withExtra(good, "sub", ""))}, "invalid_token", "sub"},
		{"subject too long", []string{"Bearer " + mustSign(t, f.key, withExtra(good, "sub", strings.Repeat("s", 256)))}, "invalid_token", "sub"},
		{"subject with a newline", []string{"Bearer " + mustSign(t, f.key, withExtra(good, "sub", "a\nb"))}, "invalid_token", "sub"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := bearerRequest("")
			for _, v := range tc.header {
				r.Header.Add("Authorization", v)
			}
			p, err := a.Authenticate(r)
			if err == nil {
				t.Fatalf("Authenticate accepted it: subject %q", p.Subject)
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %T %v is not an *Error", err, err)
			}
			if e.Code != tc.code || !strings.Contains(e.Message, tc.msg) {
				t.Errorf("got %s %q, want %s with %q", e.Code, e.Message, tc.code, tc.msg)
			}
			wantKind := ErrInvalidToken
			if tc.code == "missing_token" {
				wantKind = ErrNoToken
			}
			if !errors.Is(err, wantKind) || errors.Is(err, ErrForbidden) {
				t.Errorf("error %v: Is(%v) false", err, wantKind)
			}
			assertHeaderSafe(t, Challenge(err))
		})
	}
	if got := f.tokens("invalid"); got < 25 {
		t.Errorf("kvstack_auth_tokens_total{result=invalid} = %v", got)
	}
	if got := f.tokens("missing"); got != 3 {
		t.Errorf("kvstack_auth_tokens_total{result=missing} = %v, want 3", got)
	}
	if got := f.tokens("verified") + f.tokens("cached"); got != 0 {
		t.Errorf("accepted tokens counted: %v", got)
	}
}

// forge signs claims with any method and key, naming kid.
func forge(t *testing.T, m jwt.SigningMethod, key any, kid string, c mint.Claims) string {
	t.Helper()
	tok := jwt.NewWithClaims(m, claimsOf(t, c))
	tok.Header["kid"] = kid
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// forgeKID signs claims with k's private key under another kid.
func forgeKID(t *testing.T, k *mint.Key, kid string, c mint.Claims) string {
	return forge(t, jwt.SigningMethodEdDSA, signerOf(t, k), kid, c)
}

// claimsOf is the claims mint would sign for c.
func claimsOf(t *testing.T, c mint.Claims) jwt.MapClaims {
	t.Helper()
	k := mustKey(t, mint.NewEd25519)
	claims := jwt.MapClaims{}
	if _, _, err := jwt.NewParser().ParseUnverified(mustSign(t, k, c), claims); err != nil {
		t.Fatal(err)
	}
	return claims
}

// assertHeaderSafe checks a challenge holds only what RFC 6750 allows in
// its quoted values: printable ASCII without backslash.
func assertHeaderSafe(t *testing.T, v string) {
	t.Helper()
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x20 || c > 0x7e || c == '\\' {
			t.Fatalf("challenge %q has byte %#x", v, c)
		}
	}
	if strings.Count(v, `"`)%2 != 0 {
		t.Fatalf("challenge %q has unbalanced quotes", v)
	}
}

func TestChallenge(t *testing.T) {
	f := newFixture(t)
	a := f.auth(t)
	_, noToken := a.Authenticate(bearerRequest(""))
	_, invalid := a.Authenticate(bearerRequest("x"))
	p, err := a.Authenticate(bearerRequest(f.token(t, f.claims("alice", "team-a"))))
	if err != nil {
		t.Fatal(err)
	}
	denied := a.Authorize(p, Read, "team-b/1")
	for _, tc := range []struct {
		err  error
		want string
	}{
		{noToken, `Bearer realm="kvstack"`},
		{invalid, `Bearer realm="kvstack", error="invalid_token", error_description="the token is not a well-formed JWT"`},
		{denied, `Bearer realm="kvstack", error="insufficient_scope", error_description="the token's roles do not grant read on this key"`},
	} {
		if got := Challenge(tc.err); got != tc.want {
			t.Errorf("Challenge(%v) = %s, want %s", tc.err, got, tc.want)
		}
	}
	// The library's reason reaches logs (Error) but not the client
	// (Message).
	var e *Error
	if !errors.As(invalid, &e) || e.Error() == e.Message || strings.Contains(e.Message, "segments") {
		t.Errorf("invalid token: Error %q, Message %q", invalid, e.Message)
	}
}

func TestAuthorize(t *testing.T) {
	f := newFixture(t)
	a := f.auth(t)
	p, err := a.Authenticate(bearerRequest(f.token(t, f.claims("alice", "team-a"))))
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Authorize(p, Write, "team-a/x"); err != nil {
		t.Errorf("team-a writing team-a/x: %v", err)
	}
	for _, tc := range []struct {
		right Right
		key   string
	}{{Read, "team-b/x"}, {Write, "team-a"}, {List, "x"}} {
		err := a.Authorize(p, tc.right, tc.key)
		var e *Error
		if !errors.Is(err, ErrForbidden) || !errors.As(err, &e) || e.Code != "forbidden" {
			t.Errorf("Authorize(%v, %q) = %v, want forbidden", tc.right, tc.key, err)
		}
	}
	if got := counterValue(f.reg, "kvstack_auth_forbidden_total", "read"); got != 1 {
		t.Errorf("forbidden reads counted %v, want 1", got)
	}

	ps, err := a.Listable(p)
	if err != nil || !slices.Equal(ps, []string{"team-a/"}) {
		t.Errorf("Listable(team-a) = %q, %v", ps, err)
	}
	writer, err := a.Authenticate(bearerRequest(f.token(t, withExtra(f.claims("w"), "scope", "kv:read"))))
	if err != nil {
		t.Fatal(err)
	}
	if ps, err := a.Listable(writer); !errors.Is(err, ErrForbidden) {
		t.Errorf("Listable(no list right) = %q, %v, want forbidden", ps, err)
	}
}

// A token is verified once, then served from the cache, which never
// serves it at or past its exp.
func TestCache(t *testing.T) {
	f := newFixture(t)
	f.cfg.Leeway = 0
	a := f.auth(t)
	token := f.token(t, mint.Claims{Issuer: testIssuer, Audience: testAudience, Subject: "alice", Roles: []string{"admin"},
		NotBefore: f.clock.now(), TTL: time.Minute})
	first, err := a.Authenticate(bearerRequest(token))
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		p, err := a.Authenticate(bearerRequest(token))
		if err != nil || p != first {
			t.Fatalf("again: %p %v, want the cached %p", p, err, first)
		}
	}
	if v, c := f.tokens("verified"), f.tokens("cached"); v != 1 || c != 3 {
		t.Fatalf("verified %v, cached %v; want 1, 3", v, c)
	}
	f.clock.advance(59 * time.Second)
	if _, err := a.Authenticate(bearerRequest(token)); err != nil {
		t.Fatalf("a second before exp: %v", err)
	}
	f.clock.advance(time.Second)
	if _, err := a.Authenticate(bearerRequest(token)); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("at exp: %v, want the token refused", err)
	}
	if a.cache.len() != 0 {
		t.Errorf("the expired token is still cached")
	}
}

func TestCacheIsBounded(t *testing.T) {
	f := newFixture(t)
	f.cfg.CacheSize = 2
	a := f.auth(t)
	for _, sub := range []string{"a", "b", "c", "d"} {
		if _, err := a.Authenticate(bearerRequest(f.token(t, f.claims(sub, "admin")))); err != nil {
			t.Fatal(err)
		}
	}
	if n := a.cache.len(); n != 2 {
		t.Fatalf("cache holds %d tokens, want 2", n)
	}
}

// Rotation through the JWKS file: a new key is trusted once the file names
// it, and a key removed stops verifying, even for tokens it verified
// before (the cache is emptied on each load).
func TestJWKSFileRotation(t *testing.T) {
	f := newFixture(t)
	f.cfg.JWKSRefresh = time.Second
	a := f.auth(t)
	old := f.token(t, f.claims("old", "admin"))
	next := mustKey(t, mint.NewES256)
	fresh := mustSign(t, next, f.claims("new", "admin"))
	if _, err := a.Authenticate(bearerRequest(old)); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Authenticate(bearerRequest(fresh)); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("a key not yet published: %v", err)
	}

	f.writeJWKS(t, f.key, next)
	eventually(t, "the new key is trusted", func() bool {
		_, err := a.Authenticate(bearerRequest(fresh))
		return err == nil
	})
	if _, err := a.Authenticate(bearerRequest(old)); err != nil {
		t.Fatalf("the old key, still published: %v", err)
	}

	f.writeJWKS(t, next)
	eventually(t, "the removed key's token is refused", func() bool {
		_, err := a.Authenticate(bearerRequest(old))
		return errors.Is(err, ErrInvalidToken)
	})

	// A broken file keeps the set in use.
	if err := os.WriteFile(f.cfg.JWKSFile, []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the failed load is counted", func() bool {
		return metricValue(t, f.reg, "kvstack_auth_keyset_errors_total") > 0
	})
	if _, err := a.Authenticate(bearerRequest(fresh)); err != nil {
		t.Fatalf("after a broken file: %v", err)
	}
}

// metricValue is the value of the unlabelled gauge or counter name.
func metricValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			m := mf.GetMetric()[0]
			return m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// privateJWKS is a JWK Set holding k's private key.
func privateJWKS(t *testing.T, k *mint.Key) []byte {
	t.Helper()
	return jwksOf(t, signerOf(t, k), jwkset.JWKOptions{Marshal: jwkset.JWKMarshalOptions{Private: true},
		Metadata: jwkset.JWKMetadataOptions{KID: k.ID}})
}

// rsaJWKS is a JWK Set holding an RSA public key.
func rsaJWKS(t *testing.T, pub *rsa.PublicKey) []byte {
	t.Helper()
	return jwksOf(t, pub, jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{KID: "rsa", ALG: jwkset.AlgRS256}})
}

func jwksOf(t *testing.T, key any, o jwkset.JWKOptions) []byte {
	t.Helper()
	jwk, err := jwkset.NewJWKFromKey(key, o)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := json.Marshal(jwkset.JWKSMarshal{Keys: []jwkset.JWKMarshal{jwk.Marshal()}})
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func TestNewRefuses(t *testing.T) {
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, f *fixture)
		want  string
	}{
		{"no key set", func(t *testing.T, f *fixture) { f.cfg.JWKSFile = "" }, "KV_AUTH_JWKS_FILE or KV_AUTH_JWKS_URL"},
		{"both key sets", func(t *testing.T, f *fixture) { f.cfg.JWKSURL = "https://idp.test/jwks" }, "only one"},
		{"URL not http", func(t *testing.T, f *fixture) { f.cfg.JWKSFile, f.cfg.JWKSURL = "", "file:///etc/jwks" }, "not an http(s) URL"},
		{"no issuer", func(t *testing.T, f *fixture) { f.cfg.Issuer = "" }, "KV_AUTH_ISSUER"},
		{"no audience", func(t *testing.T, f *fixture) { f.cfg.Audience = "" }, "KV_AUTH_AUDIENCE"},
		{"no policy", func(t *testing.T, f *fixture) { f.cfg.PolicyFile = "" }, "KV_AUTH_POLICY_FILE"},
		{"leeway too long", func(t *testing.T, f *fixture) { f.cfg.Leeway = time.Hour }, "KV_AUTH_LEEWAY"},
		{"refresh too often", func(t *testing.T, f *fixture) { f.cfg.JWKSRefresh = time.Millisecond }, "KV_AUTH_JWKS_REFRESH"},
		{"no cache", func(t *testing.T, f *fixture) { f.cfg.CacheSize = 0 }, "KV_AUTH_CACHE_SIZE"},
		{"policy invalid", func(t *testing.T, f *fixture) {
			os.WriteFile(f.cfg.PolicyFile, []byte("role_claims: [[roles]]\nroles: {}\n"), 0o600)
		}, "no role is defined"},
		{"JWKS file missing", func(t *testing.T, f *fixture) { os.Remove(f.cfg.JWKSFile) }, "no such file"},
		{"JWKS file not JSON", func(t *testing.T, f *fixture) { os.WriteFile(f.cfg.JWKSFile, []byte("keys"), 0o644) }, "not a JWK Set"},
		{"JWKS file empty set", func(t *testing.T, f *fixture) { os.WriteFile(f.cfg.JWKSFile, []byte(`{"keys":[]}`), 0o644) }, "no key"},
		{"JWKS file holds a private key", func(t *testing.T, f *fixture) {
			os.WriteFile(f.cfg.JWKSFile, privateJWKS(t, f.key), 0o644)
		}, "private key"},
		{"JWKS file with RSA keys only", func(t *testing.T, f *fixture) {
			os.WriteFile(f.cfg.JWKSFile, rsaJWKS(t, &rsaKey.PublicKey), 0o644)
		}, "no public key for EdDSA, ES256"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			tc.setup(t, f)
			_, err := f.start(t)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestOff(t *testing.T) {
	var logs bytes.Buffer
	reg := prometheus.NewRegistry()
	a, err := New(t.Context(), Config{Enabled: false}, zerolog.New(&logs), metrics.NewAuth(reg))
	if err != nil {
		t.Fatal(err)
	}
	if a.Enabled() || a.Ping(t.Context()) != nil {
		t.Fatal("off: Enabled or Ping")
	}
	r := bearerRequest("")
	r.Header.Set("Authorization", "Bearer garbage") // ignored
	p, err := a.Authenticate(r)
	if err != nil || p.Subject != "" {
		t.Fatalf("off: %v %v", p, err)
	}
	for _, r := range []Right{Read, Write, List} {
		if a.Authorize(p, r, "any/key") != nil {
			t.Errorf("off: %v refused", r)
		}
	}
	if ps, err := a.Listable(p); err != nil || !slices.Equal(ps, []string{""}) {
		t.Errorf("off: Listable = %q, %v", ps, err)
	}
	if !strings.Contains(logs.String(), `"level":"warn"`) || !strings.Contains(logs.String(), "KV_AUTH=off") {
		t.Errorf("no warning logged: %s", logs.String())
	}
	if v := metricValue(t, reg, "kvstack_auth_enabled"); v != 0 {
		t.Errorf("kvstack_auth_enabled = %v, want 0", v)
	}
}

func TestOnIsMeasured(t *testing.T) {
	f := newFixture(t)
	f.auth(t)
	if v := metricValue(t, f.reg, "kvstack_auth_enabled"); v != 1 {
		t.Errorf("kvstack_auth_enabled = %v, want 1", v)
	}
	if v := metricValue(t, f.reg, "kvstack_auth_keys"); v != 1 {
		t.Errorf("kvstack_auth_keys = %v, want 1", v)
	}
}

func TestNilMetrics(t *testing.T) {
	f := newFixture(t)
	a, err := New(t.Context(), f.cfg, zerolog.Nop(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Authenticate(bearerRequest(f.token(t, f.claims("a", "admin")))); err != nil {
		t.Fatal(err)
	}
}
