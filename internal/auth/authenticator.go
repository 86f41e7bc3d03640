package auth

import (
	"context"
	"crypto/sha256"
	"errors"
	"net/http"
	"strings"
	"time"
	"unsafe"

	"github.com/golang-jwt/jwt/v5"
	"github.com/rs/zerolog"

	"github.com/kvstack/kvstack/internal/metrics"
)

// Authenticator turns a request's bearer token into its Principal, and
// judges the principal's rights.
type Authenticator struct {
	enabled bool
	keys    *keySet
	policy  *Policy
	parser  *jwt.Parser
	cache   *tokenCache
	now     func() time.Time
	metrics *metrics.Auth
	// unsigned is the refusal of a token whose signature does not verify,
	// naming the algorithms accepted.
	unsigned string
}

// maxTokenBytes bounds what is hashed and parsed: nginx's default header
// buffer (8 KiB) holds no longer Authorization line.
const maxTokenBytes = 8 << 10

// Option changes how New builds an Authenticator (tests).
type Option func(*Authenticator)

// WithClock makes the Authenticator read the time from now.
func WithClock(now func() time.Time) Option {
	return func(a *Authenticator) { a.now = now }
}

// New checks cfg, loads the policy and the key set, and keeps the key set
// fresh until ctx ends. With KV_AUTH=off it warns, and every request is an
// unrestricted principal with no subject. m may be nil.
func New(ctx context.Context, cfg Config, log zerolog.Logger, m *metrics.Auth, opts ...Option) (*Authenticator, error) {
	if err := cfg.Check(); err != nil {
		return nil, err
	}
	a := &Authenticator{enabled: bool(cfg.Enabled), now: time.Now, metrics: m}
	for _, o := range opts {
		o(a)
	}
	m.Enabled(a.enabled)
	if !a.enabled {
		log.Warn().Msg("KV_AUTH=off: any client may read, write and list every key, and writes name no writer")
		return a, nil
	}
	var err error
	if a.policy, err = LoadPolicy(cfg.PolicyFile); err != nil {
		return nil, err
	}
	if a.cache, err = newTokenCache(cfg.CacheSize); err != nil {
		return nil, err
	}
	if a.keys, err = newKeySet(ctx, cfg, a.cache.purge, log, m); err != nil {
		return nil, err
	}
	a.unsigned = "the token is not signed with " + orList(cfg.Algorithms) + " by a key this API trusts"
	a.parser = jwt.NewParser(
		jwt.WithValidMethods(cfg.Algorithms),
		jwt.WithIssuer(cfg.Issuer),
		jwt.WithAudience(cfg.Audience),
		jwt.WithLeeway(cfg.Leeway),
		jwt.WithExpirationRequired(),
		jwt.WithStrictDecoding(),
		jwt.WithTimeFunc(func() time.Time { return a.now() }),
	)
	return a, nil
}

// Enabled tells whether requests need a token (KV_AUTH).
func (a *Authenticator) Enabled() bool { return a.enabled }

// Ping fails while no signing key is loaded: every token would be refused
// (a /readyz check).
func (a *Authenticator) Ping(ctx context.Context) error {
	if !a.enabled {
		return nil
	}
	return a.keys.ping(ctx)
}

// Authenticate returns the principal of r's bearer token. Its errors are
// *Error, wrapping ErrNoToken or ErrInvalidToken.
func (a *Authenticator) Authenticate(r *http.Request) (*Principal, error) {
	if !a.enabled {
		return unrestricted, nil
	}
	raw, err := bearer(r.Header)
	if err != nil {
		if errors.Is(err, ErrNoToken) {
			a.metrics.Token(metrics.TokenMissing)
		} else {
			a.metrics.Token(metrics.TokenInvalid)
		}
		return nil, err
	}
	return a.verify(r.Context(), raw)
}

// bearer returns the token of the request's one Authorization header.
// Another scheme counts as no token (RFC 6750 §3.1: no error code for a
// client that did not try Bearer).
func bearer(h http.Header) (string, error) {
	values := h["Authorization"]
	switch {
	case len(values) == 0:
		return "", errNoToken
	case len(values) > 1:
		return "", invalidToken("the request has more than one Authorization header", nil)
	}
	const scheme = "bearer"
	v := values[0]
	if len(v) < len(scheme) || !strings.EqualFold(v[:len(scheme)], scheme) {
		return "", errNoToken
	}
	if len(v) > len(scheme) && v[len(scheme)] != ' ' {
		return "", errNoToken // "Bearerish …": another scheme
	}
	token := strings.Trim(v[len(scheme):], " ")
	switch {
	case token == "":
		return "", invalidToken("the Bearer token is empty", nil)
	case len(token) > maxTokenBytes:
		return "", invalidToken("the token is longer than 8 KiB", nil)
	}
	return token, nil
}

// verify returns the principal of a token: from the cache when it was
// verified before and has not expired, else after checking its signature
// and claims.
func (a *Authenticator) verify(ctx context.Context, raw string) (*Principal, error) {
	sum := sha256.Sum256(bytesOf(raw))
	now := a.now().UnixNano()
	if p, ok := a.cache.get(sum, now); ok {
		a.metrics.Token(metrics.TokenCached)
		return p, nil
	}
	p, err := a.check(ctx, raw)
	if err != nil {
		a.metrics.Token(metrics.TokenInvalid)
		return nil, err
	}
	a.metrics.Token(metrics.TokenVerified)
	a.cache.add(sum, p)
	return p, nil
}

// bytesOf is s's bytes without a copy, for a reader that neither keeps
// nor changes them: a token is hashed on every request, and copying it
// first was a third of the cached path's time (one 400-byte allocation).
func bytesOf(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }

func (a *Authenticator) check(ctx context.Context, raw string) (*Principal, error) {
	claims := jwt.MapClaims{}
	if _, err := a.parser.ParseWithClaims(raw, claims, a.keys.keyfunc.KeyfuncCtx(ctx)); err != nil {
		return nil, a.refusal(err)
	}
	sub, err := claims.GetSubject()
	if err == nil {
		err = checkSubject(sub)
	}
	if err != nil {
		return nil, invalidToken("the token's sub must be 1 to 255 bytes of text", err)
	}
	exp, _ := claims.GetExpirationTime() // present: the parser requires it
	return &Principal{Subject: sub, Rights: a.policy.Rights(claims), until: exp.UnixNano()}, nil
}

// refusal names, for the client, why the parser refused a token.
func (a *Authenticator) refusal(err error) *Error {
	msg := "the token is not valid"
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		msg = "the token is not a well-formed JWT"
	case errors.Is(err, jwt.ErrTokenSignatureInvalid), errors.Is(err, jwt.ErrTokenUnverifiable):
		msg = a.unsigned
	case errors.Is(err, jwt.ErrTokenExpired):
		msg = "the token has expired"
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		msg = "the token is not valid yet (nbf)"
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		msg = "the token is not meant for this API (aud)"
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		msg = "the token is from an issuer this API does not trust (iss)"
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		msg = "the token lacks a required claim (exp, iss, aud)"
	}
	return invalidToken(msg, err)
}

// orList is "a", "a or b", "a, b or c".
func orList(ss []string) string {
	if len(ss) < 2 {
		return strings.Join(ss, "")
	}
	return strings.Join(ss[:len(ss)-1], ", ") + " or " + ss[len(ss)-1]
}

// Authorize returns nil when p may exercise r on key, else an *Error
// wrapping ErrForbidden. It never looks at whether key exists.
func (a *Authenticator) Authorize(p *Principal, r Right, key string) error {
	if p.Allows(r, key) {
		return nil
	}
	a.metrics.Forbidden(r.String())
	return forbidden(r)
}

// Listable returns the prefixes under which p may list (List and Read
// both granted), or an *Error wrapping ErrForbidden when there is none. A
// listing must show no key outside them, whatever its cursor.
func (a *Authenticator) Listable(p *Principal) ([]string, error) {
	ps := p.Rights.Listable()
	if len(ps) == 0 {
		a.metrics.Forbidden(List.String())
		return nil, errListForbidden
	}
	return ps, nil
}
