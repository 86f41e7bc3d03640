package native

import (
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"time"

	"github.com/kvstack/kvstack/internal/auth/mint"
)

// AuthDir holds the stack's signing key (mode 0600) and its public JWKS.
func (s *Settings) AuthDir() string { return filepath.Join(s.Dir, "auth") }

// SigningKey is the stack's Ed25519 signing key, made on the first call
// (the first render) and kept in AuthDir; each call rewrites the JWKS the
// API reads from it.
func SigningKey(s *Settings) (*mint.Key, error) {
	k, err := mint.LoadOrCreate(s.AuthDir())
	if err != nil {
		return nil, fmt.Errorf("auth: the stack's signing key in %s: %w", s.AuthDir(), err)
	}
	return k, nil
}

// TokenRequest is what `make token` asks for.
type TokenRequest struct {
	// Roles are the token's roles in deploy/auth/policy.yaml
	// (comma-separated on the command line).
	Roles   []string
	Subject string
	TTL     time.Duration
}

// DefaultToken is `make token` without arguments: an admin for a day.
var DefaultToken = TokenRequest{Roles: []string{"admin"}, Subject: "local-admin", TTL: 24 * time.Hour}

// Token signs a token with the stack's key for its API (KV_AUTH_ISSUER,
// mint.LocalAudience): what `make token` prints, and what every lab
// client (e2e, chaos, bench) carries.
func Token(s *Settings, req TokenRequest) (string, error) {
	k, err := SigningKey(s)
	if err != nil {
		return "", err
	}
	if req.Subject == "" || len(req.Roles) == 0 || req.TTL <= 0 {
		return "", fmt.Errorf("a token needs a subject, a role and a positive TTL (got %q, %q, %v)", req.Subject, strings.Join(req.Roles, ","), req.TTL)
	}
	return k.Sign(mint.Claims{Issuer: s.Get("KV_AUTH_ISSUER"), Audience: mint.LocalAudience,
		Subject: req.Subject, Roles: req.Roles, TTL: req.TTL})
}

// Client is an HTTP client of the stack's API carrying an admin token of
// subject, over transport (nil: http.DefaultTransport).
func Client(s *Settings, subject string, transport http.RoundTripper, timeout time.Duration) (*http.Client, error) {
	req := DefaultToken
	req.Subject = subject
	tok, err := Token(s, req)
	if err != nil {
		return nil, err
	}
	if transport == nil {
		transport = http.DefaultTransport
	}
	return &http.Client{Timeout: timeout, Transport: mint.Bearer(transport, tok)}, nil
}
