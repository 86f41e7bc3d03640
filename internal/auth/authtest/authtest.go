// Package authtest gives the tests that go through the API's router what
// a client of the real stack has: an Authenticator (or its KV_AUTH_*
// settings) trusting a fresh Ed25519 key, the repository's policy
// (deploy/auth/policy.yaml), and tokens signed by that key.
package authtest

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/kvstack/kvstack/internal/auth"
	"github.com/kvstack/kvstack/internal/auth/mint"
	"github.com/kvstack/kvstack/internal/metrics"
)

// Issuer is a signing key trusted by the Authenticators and settings it
// makes.
type Issuer struct {
	Key    *mint.Key
	Config auth.Config
}

// New makes a key, writes its JWKS into a temporary directory, and returns
// the settings of an Authenticator trusting it under policy (a YAML
// policy; "" for the repository's deploy/auth/policy.yaml).
func New(tb testing.TB, policy string) *Issuer {
	tb.Helper()
	i, err := NewIn(tb.TempDir(), policy)
	if err != nil {
		tb.Fatal(err)
	}
	return i
}

// NewIn is New writing into dir, for a TestMain.
func NewIn(dir, policy string) (*Issuer, error) {
	key, err := mint.NewEd25519()
	if err != nil {
		return nil, err
	}
	jwks, err := mint.JWKS(key)
	if err != nil {
		return nil, err
	}
	jwksFile := filepath.Join(dir, mint.JWKSFile)
	if err := os.WriteFile(jwksFile, jwks, 0o644); err != nil {
		return nil, err
	}
	policyFile := RepoPolicy()
	if policy != "" {
		policyFile = filepath.Join(dir, "policy.yaml")
		if err := os.WriteFile(policyFile, []byte(policy), 0o644); err != nil {
			return nil, err
		}
	}
	return &Issuer{Key: key, Config: auth.Config{
		Enabled: true, JWKSFile: jwksFile, JWKSRefresh: time.Hour,
		Issuer: mint.LocalIssuer, Audience: mint.LocalAudience, Leeway: 30 * time.Second,
		PolicyFile: policyFile, Algorithms: auth.DefaultAlgorithms, CacheSize: 1000,
	}}, nil
}

// RepoPolicy is the path of deploy/auth/policy.yaml.
func RepoPolicy() string {
	_, file, _, _ := runtime.Caller(0) // internal/auth/authtest/authtest.go
	return filepath.Join(filepath.Dir(file), "..", "..", "..", "deploy", "auth", "policy.yaml")
}

// Env is the KV_AUTH_* settings of i.Config, for a process's environment.
func (i *Issuer) Env() map[string]string {
	return map[string]string{
		"KV_AUTH": "on", "KV_AUTH_JWKS_FILE": i.Config.JWKSFile, "KV_AUTH_ISSUER": i.Config.Issuer,
		"KV_AUTH_AUDIENCE": i.Config.Audience, "KV_AUTH_POLICY_FILE": i.Config.PolicyFile,
	}
}

// Authenticator is an Authenticator of i.Config; it stops with the test.
func (i *Issuer) Authenticator(tb testing.TB) *auth.Authenticator {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	tb.Cleanup(cancel)
	a, err := i.Start(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	return a
}

// Start is an Authenticator of i.Config, until ctx ends.
func (i *Issuer) Start(ctx context.Context) (*auth.Authenticator, error) {
	return auth.New(ctx, i.Config, zerolog.Nop(), (*metrics.Auth)(nil))
}

// Token is a token for subject with roles, living an hour.
func (i *Issuer) Token(tb testing.TB, subject string, roles ...string) string {
	tb.Helper()
	t, err := i.Sign(mint.Claims{Subject: subject, Roles: roles, TTL: time.Hour})
	if err != nil {
		tb.Fatal(err)
	}
	return t
}

// Sign signs c, its issuer and audience defaulting to i.Config's.
func (i *Issuer) Sign(c mint.Claims) (string, error) {
	if c.Issuer == "" {
		c.Issuer = i.Config.Issuer
	}
	if c.Audience == "" {
		c.Audience = i.Config.Audience
	}
	return i.Key.Sign(c)
}

// Client is an HTTP client that sends token on every request.
func Client(token string, timeout time.Duration) *http.Client {
	return &http.Client{Timeout: timeout, Transport: mint.Bearer(http.DefaultTransport, token)}
}
