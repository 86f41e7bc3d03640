package mint

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/kvstack/kvstack/internal/auth"
	"github.com/kvstack/kvstack/internal/envdefault"
)

// RFC 8037 appendix A.3: the thumbprint of its Ed25519 example key.
func TestKIDIsTheRFC7638Thumbprint(t *testing.T) {
	seed, _ := base64.RawURLEncoding.DecodeString("nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A")
	k, err := newKey(ed25519.NewKeyFromSeed(seed))
	if err != nil {
		t.Fatal(err)
	}
	if want := "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"; k.ID != want {
		t.Fatalf("kid %s, want %s", k.ID, want)
	}
}

func TestSignAndJWKS(t *testing.T) {
	for _, make := range []func() (*Key, error){NewEd25519, NewES256} {
		k, err := make()
		if err != nil {
			t.Fatal(err)
		}
		t.Run(k.Alg(), func(t *testing.T) {
			raw, err := JWKS(k)
			if err != nil {
				t.Fatal(err)
			}
			var set struct {
				Keys []map[string]any `json:"keys"`
			}
			if err := json.Unmarshal(raw, &set); err != nil || len(set.Keys) != 1 {
				t.Fatalf("JWKS %s: %v", raw, err)
			}
			jwk := set.Keys[0]
			if jwk["kid"] != k.ID || jwk["alg"] != k.Alg() || jwk["use"] != "sig" || jwk["d"] != nil {
				t.Errorf("JWK %v: want kid %s, alg %s, use sig, no d", jwk, k.ID, k.Alg())
			}

			token, err := k.Sign(Claims{Issuer: "iss", Audience: "aud", Subject: "alice", Roles: []string{"admin"},
				Scope: "kv:read", TTL: time.Minute, Extra: map[string]any{"iat": nil, "team": "a"}})
			if err != nil {
				t.Fatal(err)
			}
			claims := jwt.MapClaims{}
			parsed, err := jwt.NewParser(jwt.WithValidMethods([]string{k.Alg()}), jwt.WithAudience("aud"), jwt.WithIssuer("iss")).
				ParseWithClaims(token, claims, func(*jwt.Token) (any, error) { return k.Public(), nil })
			if err != nil {
				t.Fatal(err)
			}
			if parsed.Header["kid"] != k.ID {
				t.Errorf("kid header %v", parsed.Header["kid"])
			}
			exp, _ := claims.GetExpirationTime()
			nbf, _ := claims.GetNotBefore()
			if d := exp.Sub(nbf.Time); d != time.Minute {
				t.Errorf("exp - nbf = %v", d)
			}
			if claims["sub"] != "alice" || claims["scope"] != "kv:read" || claims["team"] != "a" || claims["iat"] != nil {
				t.Errorf("claims %v", claims)
			}
		})
	}
}

func TestJWKSOfSeveralKeys(t *testing.T) {
	a, _ := NewEd25519()
	b, _ := NewES256()
	raw, err := JWKS(a, b)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(raw), a.ID) || !strings.Contains(string(raw), b.ID) {
		t.Fatalf("JWKS %s lacks a kid", raw)
	}
}

// The stack's first start makes the key; later starts keep it.
func TestLoadOrCreate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "auth")
	first, err := LoadOrCreate(dir)
	if err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(filepath.Join(dir, PrivateFile))
	if err != nil {
		t.Fatal(err)
	}
	if mode := info.Mode().Perm(); mode != 0o600 {
		t.Errorf("private key mode %v, want 0600", mode)
	}
	jwks1, _ := os.ReadFile(filepath.Join(dir, JWKSFile))
	os.Remove(filepath.Join(dir, JWKSFile)) // remade from the key
	again, err := LoadOrCreate(dir)
	if err != nil {
		t.Fatal(err)
	}
	jwks2, _ := os.ReadFile(filepath.Join(dir, JWKSFile))
	if again.ID != first.ID || string(jwks1) != string(jwks2) {
		t.Errorf("second start: kid %s, want %s; JWKS changed: %v", again.ID, first.ID, string(jwks1) != string(jwks2))
	}
	if err := first.WritePrivate(filepath.Join(dir, PrivateFile)); err == nil {
		t.Error("WritePrivate overwrote a signing key")
	}
}

func TestReadPrivateRefuses(t *testing.T) {
	dir := t.TempDir()
	for name, content := range map[string]string{
		"not-pem":   "hello",
		"wrong-pem": "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\n-----END PUBLIC KEY-----\n",
		"bad-der":   "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
	} {
		path := filepath.Join(dir, name)
		os.WriteFile(path, []byte(content), 0o600)
		if _, err := ReadPrivate(path); err == nil {
			t.Errorf("%s: ReadPrivate succeeded", name)
		}
	}
	if _, err := ReadPrivate(filepath.Join(dir, "absent")); !os.IsNotExist(err) {
		t.Errorf("absent: %v", err)
	}
}

// make token's audience is the one the API expects by default.
func TestLocalAudienceIsTheAPIDefault(t *testing.T) {
	if LocalAudience != envdefault.Of[auth.Config]().Audience {
		t.Fatalf("LocalAudience %q, KV_AUTH_AUDIENCE's default %q", LocalAudience, envdefault.Of[auth.Config]().Audience)
	}
}
