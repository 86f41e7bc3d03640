package auth

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	"github.com/rs/zerolog"
	"golang.org/x/time/rate"

	"github.com/kvstack/kvstack/internal/metrics"
)

// DefaultAlgorithms are the signature algorithms accepted unless
// KV_AUTH_ALGORITHMS says otherwise: asymmetric, so that the API holds no
// secret that could mint a token. Anything not configured (none, HS256
// even when keyed with a public key, RS256 unless opted in) is refused
// before any key is looked at.
var DefaultAlgorithms = []string{jwt.SigningMethodEdDSA.Alg(), jwt.SigningMethodES256.Alg()}

// Fetching a JWKS URL: each request's bound, and how often a token naming a
// kid the set lacks may trigger a fetch ahead of the schedule (a provider
// that rotates publishes the new key before signing with it, so this is
// for the rare token that comes first; a flood of made-up kids costs the
// provider one fetch per period).
// jwkset bounds both the wait for the limiter and that fetch by
// jwksFetchTimeout: a request whose turn would come later is refused at
// once, so at most one request at a time waits, for one fetch.
const (
	jwksFetchTimeout  = 10 * time.Second
	unknownKIDRefresh = 30 * time.Second
)

// keySet is the public keys tokens are verified with, by kid. It is kept up
// to date in the background: from a file (re-read every refresh, so that a
// key added or removed there takes effect without a restart) or a URL
// (jwkset's refresh). Every successful load replaces the whole set and
// calls onChange, which empties the verified-token cache: a key removed
// stops verifying at the next load, even for tokens already seen.
type keySet struct {
	source   string // the file or URL, for messages
	keyfunc  keyfunc.Keyfunc
	algs     []string     // KV_AUTH_ALGORITHMS
	usable   atomic.Int64 // keys that can verify an allowed algorithm
	onChange func()
	log      zerolog.Logger
	metrics  *metrics.Auth
}

// watchedStorage is the store a source fills; it reports each replacement.
type watchedStorage struct {
	*jwkset.MemoryJWKSet
	replaced func([]jwkset.JWK)
}

func (s watchedStorage) KeyReplaceAll(ctx context.Context, keys []jwkset.JWK) error {
	if err := s.MemoryJWKSet.KeyReplaceAll(ctx, keys); err != nil {
		return err
	}
	s.replaced(keys)
	return nil
}

// newKeySet loads the configured key set and keeps it fresh until ctx
// ends. A file that cannot be read or holds no usable key fails the start;
// a URL that cannot be fetched yet does not (the provider may start after
// the API): the set stays empty, every token is refused, /readyz says why
// (ping), and the fetch is retried every refresh.
func newKeySet(ctx context.Context, cfg Config, onChange func(), log zerolog.Logger, m *metrics.Auth) (*keySet, error) {
	ks := &keySet{algs: cfg.Algorithms, onChange: onChange, log: log, metrics: m}
	store := watchedStorage{MemoryJWKSet: jwkset.NewMemoryStorage(), replaced: ks.replaced}
	var storage jwkset.Storage = store
	if cfg.JWKSFile != "" {
		ks.source = cfg.JWKSFile
		raw, err := ks.loadFile(ctx, store, nil)
		if err != nil {
			return nil, err
		}
		if ks.usable.Load() == 0 {
			return nil, fmt.Errorf("KV_AUTH_JWKS_FILE %s: no public key for %s", cfg.JWKSFile, strings.Join(cfg.Algorithms, ", "))
		}
		go ks.watchFile(ctx, store, raw, cfg.JWKSRefresh)
	} else {
		ks.source = cfg.JWKSURL
		var err error
		storage, err = ks.fetcher(ctx, cfg, store)
		if err != nil {
			return nil, err
		}
	}
	kf, err := keyfunc.New(keyfunc.Options{Ctx: ctx, Storage: storage})
	if err != nil {
		return nil, err
	}
	ks.keyfunc = kf
	return ks, nil
}

// fetcher is jwkset's client of the JWKS URL, filling store.
func (ks *keySet) fetcher(ctx context.Context, cfg Config, store watchedStorage) (jwkset.Storage, error) {
	client := &http.Client{Timeout: jwksFetchTimeout}
	context.AfterFunc(ctx, client.CloseIdleConnections)
	fetched, err := jwkset.NewStorageFromHTTP(cfg.JWKSURL, jwkset.HTTPClientStorageOptions{
		Client:                    client,
		Ctx:                       ctx,
		HTTPTimeout:               jwksFetchTimeout,
		NoErrorReturnFirstHTTPReq: true,
		RefreshErrorHandler:       ks.refreshFailed,
		RefreshInterval:           cfg.JWKSRefresh,
		Storage:                   store,
	})
	if err != nil {
		return nil, fmt.Errorf("KV_AUTH_JWKS_URL: %w", err)
	}
	return jwkset.NewHTTPClient(jwkset.HTTPClientOptions{
		HTTPURLs:          map[string]jwkset.Storage{cfg.JWKSURL: fetched},
		RateLimitWaitMax:  jwksFetchTimeout,
		RefreshUnknownKID: rate.NewLimiter(rate.Every(unknownKIDRefresh), 1),
	})
}

func (ks *keySet) refreshFailed(_ context.Context, err error) {
	ks.metrics.KeySetError()
	ks.log.Warn().Err(err).Str("jwks", ks.source).Int64("usable_keys", ks.usable.Load()).
		Msg("auth key set not refreshed; the keys held stay in use")
}

// replaced counts the usable keys of a new set and drops verified tokens.
func (ks *keySet) replaced(keys []jwkset.JWK) {
	n := 0
	for _, k := range keys {
		if usableKey(k, ks.algs) {
			n++
		}
	}
	ks.usable.Store(int64(n))
	ks.metrics.Keys(n)
	ks.log.Info().Str("jwks", ks.source).Int("keys", len(keys)).Int("usable_keys", n).Msg("auth key set loaded")
	if ks.onChange != nil {
		ks.onChange()
	}
}

// usableKey tells whether k can verify one of algs.
func usableKey(k jwkset.JWK, algs []string) bool {
	alg := k.Marshal().ALG.String()
	allowed := func(a string) bool { return slices.Contains(algs, a) && (alg == "" || alg == a) }
	switch key := k.Key().(type) {
	case ed25519.PublicKey:
		return allowed(jwt.SigningMethodEdDSA.Alg())
	case *ecdsa.PublicKey:
		return key.Curve == elliptic.P256() && allowed(jwt.SigningMethodES256.Alg())
	case *rsa.PublicKey:
		return key.N.BitLen() >= minRSABits && (allowed(jwt.SigningMethodRS256.Alg()) || allowed(jwt.SigningMethodPS256.Alg()))
	}
	return false
}

// minRSABits is the smallest RSA modulus trusted (NIST SP 800-131A).
const minRSABits = 2048

// loadFile reads the JWKS file into store unless its bytes are last's.
func (ks *keySet) loadFile(ctx context.Context, store watchedStorage, last []byte) ([]byte, error) {
	raw, err := os.ReadFile(ks.source)
	if err != nil {
		return nil, fmt.Errorf("KV_AUTH_JWKS_FILE: %w", err)
	}
	if last != nil && bytes.Equal(raw, last) {
		return raw, nil
	}
	keys, err := parseJWKS(raw)
	if err != nil {
		return nil, fmt.Errorf("KV_AUTH_JWKS_FILE %s: %w", ks.source, err)
	}
	if err := store.KeyReplaceAll(ctx, keys); err != nil {
		return nil, err
	}
	return raw, nil
}

func (ks *keySet) watchFile(ctx context.Context, store watchedStorage, last []byte, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			raw, err := ks.loadFile(ctx, store, last)
			if err != nil {
				ks.refreshFailed(ctx, err)
				continue
			}
			last = raw
		}
	}
}

// parseJWKS decodes a public JWK Set. A private key is refused: it means
// the signer's key file was given where the public set belongs, and the API
// must never hold what can sign.
func parseJWKS(raw []byte) ([]jwkset.JWK, error) {
	var set jwkset.JWKSMarshal
	if err := json.Unmarshal(raw, &set); err != nil {
		return nil, fmt.Errorf("not a JWK Set: %w", err)
	}
	if len(set.Keys) == 0 {
		return nil, errors.New(`no key in "keys"`)
	}
	for i, k := range set.Keys {
		if k.D != "" {
			return nil, fmt.Errorf("keys[%d] (kid %q) is a private key: give the public JWK Set", i, k.KID)
		}
	}
	keys, err := set.JWKSlice()
	if err != nil {
		return nil, err
	}
	return keys, nil
}

// ping fails while no key can verify a token.
func (ks *keySet) ping(context.Context) error {
	if ks.usable.Load() == 0 {
		return fmt.Errorf("no usable signing key loaded from %s", ks.source)
	}
	return nil
}
