package auth

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/rs/zerolog"
)

// Config says how the API identifies clients.
type Config struct {
	// Enabled: KV_AUTH=off serves every client as an admin, for a lab that
	// wants none; the API warns at start and reports it on /readyz and in
	// kvstack_auth_enabled.
	Enabled Switch `env:"KV_AUTH" envDefault:"on"`
	// JWKSFile is the public key set that signs tokens, a JWKS file,
	// re-read every JWKSRefresh. Exactly one of it and JWKSURL is set.
	JWKSFile string `env:"KV_AUTH_JWKS_FILE"`
	// JWKSURL is the key set's URL (an OIDC provider's jwks_uri), fetched
	// every JWKSRefresh and at once for a kid it does not hold (at most
	// every 30s).
	JWKSURL string `env:"KV_AUTH_JWKS_URL"`
	// JWKSRefresh is how often the key set is read again: a key added or
	// removed takes effect without a restart.
	JWKSRefresh time.Duration `env:"KV_AUTH_JWKS_REFRESH" envDefault:"5m"`
	// Issuer is the iss every token must carry: the provider's issuer URL,
	// or the local stack's.
	Issuer string `env:"KV_AUTH_ISSUER"`
	// Audience must be among a token's aud: the name the provider gives
	// this API.
	Audience string `env:"KV_AUTH_AUDIENCE" envDefault:"kvstack"`
	// Leeway is the clock skew allowed on exp and nbf.
	Leeway time.Duration `env:"KV_AUTH_LEEWAY" envDefault:"30s"`
	// PolicyFile maps roles to rights on key prefixes (Policy).
	PolicyFile string `env:"KV_AUTH_POLICY_FILE"`
	// Algorithms are the signature algorithms accepted (EdDSA, ES256, and
	// for a provider that signs with RSA, RS256 or PS256). Symmetric ones
	// (HS*) and none are never accepted: the API holds no secret that
	// could mint a token.
	Algorithms []string `env:"KV_AUTH_ALGORITHMS" envDefault:"EdDSA,ES256"`
	// CacheSize bounds the verified tokens kept, so that a client reusing
	// its token pays for its signature once.
	CacheSize int `env:"KV_AUTH_CACHE_SIZE" envDefault:"10000"`
}

// maxLeeway keeps KV_AUTH_LEEWAY small: past it, an expired token would
// live on by a clock's error rather than by its issuer's choice.
const maxLeeway = 5 * time.Minute

// Check reports a configuration that cannot start, naming the variable.
func (c Config) Check() error {
	if !c.Enabled {
		return nil
	}
	var errs []error
	switch {
	case c.JWKSFile == "" && c.JWKSURL == "":
		errs = append(errs, errors.New("set KV_AUTH_JWKS_FILE or KV_AUTH_JWKS_URL (or KV_AUTH=off)"))
	case c.JWKSFile != "" && c.JWKSURL != "":
		errs = append(errs, errors.New("set only one of KV_AUTH_JWKS_FILE and KV_AUTH_JWKS_URL"))
	case c.JWKSURL != "":
		if u, err := url.Parse(c.JWKSURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			errs = append(errs, fmt.Errorf("KV_AUTH_JWKS_URL %q is not an http(s) URL", c.JWKSURL))
		}
	}
	if c.JWKSRefresh < time.Second {
		errs = append(errs, fmt.Errorf("KV_AUTH_JWKS_REFRESH %v: at least 1s", c.JWKSRefresh))
	}
	if c.Issuer == "" {
		errs = append(errs, errors.New("set KV_AUTH_ISSUER: the iss of the tokens to accept"))
	}
	if c.Audience == "" {
		errs = append(errs, errors.New("set KV_AUTH_AUDIENCE: the aud of the tokens to accept"))
	}
	if c.Leeway < 0 || c.Leeway > maxLeeway {
		errs = append(errs, fmt.Errorf("KV_AUTH_LEEWAY %v: from 0 to %v", c.Leeway, maxLeeway))
	}
	if c.PolicyFile == "" {
		errs = append(errs, errors.New("set KV_AUTH_POLICY_FILE: the roles' rights on key prefixes"))
	}
	if err := checkAlgorithms(c.Algorithms); err != nil {
		errs = append(errs, err)
	}
	if c.CacheSize < 1 {
		errs = append(errs, fmt.Errorf("KV_AUTH_CACHE_SIZE %d: at least 1", c.CacheSize))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("auth (KV_AUTH=on): %w", err)
	}
	return nil
}

// MarshalZerologObject logs the configuration; it holds no secret.
func (c Config) MarshalZerologObject(e *zerolog.Event) {
	e.Bool("enabled", bool(c.Enabled))
	if !c.Enabled {
		return
	}
	e.Str("jwks_file", c.JWKSFile).Str("jwks_url", c.JWKSURL).Dur("jwks_refresh", c.JWKSRefresh).
		Str("issuer", c.Issuer).Str("audience", c.Audience).Dur("leeway", c.Leeway).
		Str("policy_file", c.PolicyFile).Strs("algorithms", c.Algorithms).Int("cache_size", c.CacheSize)
}

// Allowed are the algorithms KV_AUTH_ALGORITHMS may name: asymmetric
// ones whose keys jwkset and golang-jwt both handle.
var Allowed = []string{"EdDSA", "ES256", "RS256", "PS256"}

func checkAlgorithms(algs []string) error {
	if len(algs) == 0 {
		return errors.New("KV_AUTH_ALGORITHMS: name at least one of " + strings.Join(Allowed, ", "))
	}
	for _, a := range algs {
		if !slices.Contains(Allowed, a) {
			return fmt.Errorf("KV_AUTH_ALGORITHMS: %q is not one of %s (symmetric algorithms and none are never accepted)", a, strings.Join(Allowed, ", "))
		}
	}
	return nil
}

// Switch is a setting that is on or off; it reads on/off, true/false, 1/0.
type Switch bool

// UnmarshalText implements encoding.TextUnmarshaler.
func (s *Switch) UnmarshalText(b []byte) error {
	switch strings.ToLower(string(b)) {
	case "on", "true", "1":
		*s = true
	case "off", "false", "0":
		*s = false
	default:
		return fmt.Errorf("%q is neither on nor off", b)
	}
	return nil
}

// MarshalText implements encoding.TextMarshaler.
func (s Switch) MarshalText() ([]byte, error) {
	if s {
		return []byte("on"), nil
	}
	return []byte("off"), nil
}
