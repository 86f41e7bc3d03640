package auth

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"

	"github.com/kvstack/kvstack/internal/auth/mint"
)

// provider plays an OIDC provider's jwks_uri, as Keycloak publishes it:
// its signing keys beside keys kvstack cannot use (RSA, one for
// encryption).
type provider struct {
	srv     *httptest.Server
	mu      sync.Mutex
	keys    []*mint.Key
	down    bool
	fetches atomic.Int64
	rsa     []jwkset.JWKMarshal
	rsaSig  *rsa.PrivateKey // signs RS256 under kid "rsa-sig"
}

const certsPath = "/realms/kv/protocol/openid-connect/certs"

func newProvider(t *testing.T, keys ...*mint.Key) *provider {
	t.Helper()
	p := &provider{keys: keys}
	for _, use := range []jwkset.USE{jwkset.UseSig, jwkset.UseEnc} {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		alg := jwkset.AlgRS256
		if use == jwkset.UseEnc {
			alg = jwkset.AlgRSAOAEP
		}
		jwk, err := jwkset.NewJWKFromKey(&k.PublicKey, jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{KID: "rsa-" + string(use), ALG: alg, USE: use}})
		if err != nil {
			t.Fatal(err)
		}
		p.rsa = append(p.rsa, jwk.Marshal())
		if use == jwkset.UseSig {
			p.rsaSig = k
		}
	}
	p.srv = httptest.NewServer(http.HandlerFunc(p.serve)) // 127.0.0.1
	t.Cleanup(p.srv.Close)
	return p
}

func (p *provider) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != certsPath {
		http.NotFound(w, r)
		return
	}
	p.fetches.Add(1)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.down {
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	}
	raw, err := mint.JWKS(p.keys...)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	var set jwkset.JWKSMarshal
	_ = json.Unmarshal(raw, &set)
	set.Keys = append(set.Keys, p.rsa...)
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(set)
}

func (p *provider) set(down bool, keys ...*mint.Key) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down, p.keys = down, keys
}

func (p *provider) issuer() string { return p.srv.URL + "/realms/kv" }

// oidcFixture points a fixture at the provider.
func oidcFixture(t *testing.T, p *provider) *fixture {
	f := newFixture(t)
	f.cfg.JWKSFile = ""
	f.cfg.JWKSURL = p.srv.URL + certsPath
	f.cfg.Issuer = p.issuer()
	return f
}

// keycloakClaims are an access token's claims as Keycloak issues them,
// roles in realm_access.
func keycloakClaims(p *provider, f *fixture, sub string, roles ...string) mint.Claims {
	return mint.Claims{Issuer: p.issuer(), Audience: testAudience, Subject: sub, TTL: 5 * time.Minute, NotBefore: f.clock.now(),
		Extra: map[string]any{
			"typ":          "Bearer",
			"azp":          "kv-cli",
			"scope":        "openid profile",
			"realm_access": map[string]any{"roles": roles},
		}}
}

func TestOIDCProvider(t *testing.T) {
	es := mustKey(t, mint.NewES256)
	p := newProvider(t, es)
	f := oidcFixture(t, p)
	a := f.auth(t)
	if err := a.Ping(t.Context()); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	if v := metricValue(t, f.reg, "kvstack_auth_keys"); v != 1 {
		t.Errorf("usable keys %v, want 1 (the RSA ones are not)", v)
	}
	pr, err := a.Authenticate(bearerRequest(mustSign(t, es, keycloakClaims(p, f, "f3a1-user", "team-a", "offline_access"))))
	if err != nil {
		t.Fatalf("a Keycloak-shaped token: %v", err)
	}
	if pr.Subject != "f3a1-user" || !pr.Allows(Write, "team-a/1") || pr.Allows(Write, "team-b/1") {
		t.Errorf("principal %q: write team-a/1 %v, team-b/1 %v", pr.Subject, pr.Allows(Write, "team-a/1"), pr.Allows(Write, "team-b/1"))
	}
	// The provider's own RSA key, published for RS256: refused, as every
	// algorithm but EdDSA and ES256 is.
	if _, err := a.Authenticate(bearerRequest(forge(t, jwt.SigningMethodRS256, p.rsaSig, "rsa-sig", keycloakClaims(p, f, "u", "admin")))); !errors.Is(err, ErrInvalidToken) {
		t.Errorf("RS256 by the provider's published RSA key: %v, want refused", err)
	}
	// The same key, another issuer: refused.
	other := keycloakClaims(p, f, "u", "admin")
	other.Issuer = p.srv.URL + "/realms/other"
	if _, err := a.Authenticate(bearerRequest(mustSign(t, es, other))); !errors.Is(err, ErrInvalidToken) {
		t.Errorf("another realm's token: %v", err)
	}
}

// A provider rotates: it publishes a new key and signs with it. The first
// token naming the new kid makes the API fetch the set at once, well before
// its next scheduled refresh; the old key, withdrawn, stops verifying at
// the next fetch, cached tokens included.
func TestOIDCRotationByKID(t *testing.T) {
	oldKey := mustKey(t, mint.NewES256)
	p := newProvider(t, oldKey)
	f := oidcFixture(t, p)
	a := f.auth(t)
	oldToken := mustSign(t, oldKey, keycloakClaims(p, f, "u", "admin"))
	if _, err := a.Authenticate(bearerRequest(oldToken)); err != nil {
		t.Fatal(err)
	}
	newKey := mustKey(t, mint.NewEd25519)
	p.set(false, newKey)
	before := p.fetches.Load()
	if _, err := a.Authenticate(bearerRequest(mustSign(t, newKey, keycloakClaims(p, f, "u", "admin")))); err != nil {
		t.Fatalf("the new kid: %v", err)
	}
	if got := p.fetches.Load() - before; got != 1 {
		t.Errorf("fetches for the new kid: %d, want 1", got)
	}
	if _, err := a.Authenticate(bearerRequest(oldToken)); !errors.Is(err, ErrInvalidToken) {
		t.Errorf("the withdrawn key's cached token: %v, want refused", err)
	}
}

// Tokens naming made-up kids cost the provider one fetch per period, not
// one per token, and no request waits for its turn.
func TestOIDCUnknownKIDFlood(t *testing.T) {
	p := newProvider(t, mustKey(t, mint.NewES256))
	f := oidcFixture(t, p)
	a := f.auth(t)
	before := p.fetches.Load()
	start := time.Now()
	for range 20 {
		stranger := mustKey(t, mint.NewEd25519)
		if _, err := a.Authenticate(bearerRequest(mustSign(t, stranger, keycloakClaims(p, f, "u", "admin")))); !errors.Is(err, ErrInvalidToken) {
			t.Fatalf("a stranger's kid: %v", err)
		}
	}
	if got := p.fetches.Load() - before; got > 1 {
		t.Errorf("20 unknown kids made %d fetches, want at most 1", got)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("20 unknown kids took %v: requests waited for the limiter", d)
	}
}

// A provider unreachable at start does not stop the API: it is not ready
// and refuses tokens until the set loads.
func TestOIDCProviderDownAtStart(t *testing.T) {
	es := mustKey(t, mint.NewES256)
	p := newProvider(t, es)
	p.set(true, es)
	f := oidcFixture(t, p)
	f.cfg.JWKSRefresh = time.Second
	a := f.auth(t)
	if err := a.Ping(t.Context()); err == nil {
		t.Fatal("Ping with no key loaded succeeded")
	}
	token := mustSign(t, es, keycloakClaims(p, f, "u", "admin"))
	if _, err := a.Authenticate(bearerRequest(token)); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("with no key: %v", err)
	}
	p.set(false, es)
	eventually(t, "ready once the provider answers", func() bool { return a.Ping(t.Context()) == nil })
	if _, err := a.Authenticate(bearerRequest(token)); err != nil {
		t.Fatalf("after the provider came up: %v", err)
	}
	if metricValue(t, f.reg, "kvstack_auth_keyset_errors_total") < 1 {
		t.Error("the failed fetches were not counted")
	}
}
