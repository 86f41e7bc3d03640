// Package mint makes signing keys and signs the tokens that package auth
// verifies: for tests, and for the lab's `make token`, which prints a
// token signed by the local stack's key (made on the stack's first start
// by LoadOrCreate). Production tokens come from an OIDC provider; nothing
// the API runs imports this package.
package mint

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
)

// The local stack's token settings: the issuer its API trusts
// (KV_AUTH_ISSUER) and the audience it expects (KV_AUTH_AUDIENCE's
// default), which `make token` signs for.
const (
	LocalIssuer   = "kvstack-local"
	LocalAudience = "kvstack"
)

// Key is a signing key pair and its kid.
type Key struct {
	// ID is the key's kid: its RFC 7638 thumbprint, so that the same key
	// always has the same id and two keys never share one.
	ID     string
	method jwt.SigningMethod
	signer crypto.Signer
}

// NewEd25519 makes an Ed25519 key (alg EdDSA), the local stack's kind.
func NewEd25519() (*Key, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	return newKey(priv)
}

// NewES256 makes a P-256 key (alg ES256), the kind many OIDC providers use.
func NewES256() (*Key, error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	return newKey(priv)
}

func newKey(signer crypto.Signer) (*Key, error) {
	k := &Key{signer: signer}
	switch pub := signer.Public().(type) {
	case ed25519.PublicKey:
		k.method = jwt.SigningMethodEdDSA
		k.ID = thumbprint(map[string]string{"crv": "Ed25519", "kty": "OKP", "x": b64(pub)})
	case *ecdsa.PublicKey:
		if pub.Curve != elliptic.P256() {
			return nil, errors.New("mint: an ECDSA key must be on P-256")
		}
		k.method = jwt.SigningMethodES256
		raw, err := pub.Bytes() // 0x04 || X || Y, 32 bytes each
		if err != nil {
			return nil, err
		}
		k.ID = thumbprint(map[string]string{"crv": "P-256", "kty": "EC", "x": b64(raw[1:33]), "y": b64(raw[33:])})
	default:
		return nil, fmt.Errorf("mint: %T keys are not supported; use Ed25519 or P-256", pub)
	}
	return k, nil
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// thumbprint is RFC 7638's: SHA-256 of the key's required members as JSON
// with sorted names and no white space (encoding/json sorts map keys).
func thumbprint(members map[string]string) string {
	canonical, _ := json.Marshal(members)
	sum := sha256.Sum256(canonical)
	return b64(sum[:])
}

// Alg is the key's JWS algorithm: EdDSA or ES256.
func (k *Key) Alg() string { return k.method.Alg() }

// Public is the key's public half.
func (k *Key) Public() crypto.PublicKey { return k.signer.Public() }

// JWKS returns the public JWK Set of keys, each with its kid, alg and
// use "sig": the file KV_AUTH_JWKS_FILE names. Several keys make a
// rotation: the set holds the old and the new while tokens of both live.
func JWKS(keys ...*Key) ([]byte, error) {
	store := jwkset.NewMemoryStorage()
	ctx := context.Background()
	for _, k := range keys {
		jwk, err := jwkset.NewJWKFromKey(k.signer.Public(), jwkset.JWKOptions{
			Metadata: jwkset.JWKMetadataOptions{ALG: jwkset.ALG(k.Alg()), KID: k.ID, USE: jwkset.UseSig},
		})
		if err != nil {
			return nil, fmt.Errorf("mint: JWK of %s: %w", k.ID, err)
		}
		if err := store.KeyWrite(ctx, jwk); err != nil {
			return nil, err
		}
	}
	raw, err := store.JSONPublic(ctx)
	if err != nil {
		return nil, err
	}
	return append(raw, '\n'), nil
}

// Claims are what a token says.
type Claims struct {
	Issuer   string
	Audience string
	Subject  string
	// Roles go in the "roles" claim, Scope in "scope" (space-separated).
	Roles []string
	Scope string
	// TTL is how long the token lives from its nbf.
	TTL time.Duration
	// NotBefore defaults to now.
	NotBefore time.Time
	// Extra claims, set last: another provider's claims, or one that
	// overrides the above; a nil value removes the claim (tests of
	// tokens that lack one).
	Extra map[string]any
}

// Sign returns a compact JWT of c, signed by k, with k's kid in its header.
func (k *Key) Sign(c Claims) (string, error) {
	nbf := c.NotBefore
	if nbf.IsZero() {
		nbf = time.Now()
	}
	claims := jwt.MapClaims{
		"iss": c.Issuer,
		"aud": c.Audience,
		"sub": c.Subject,
		"iat": nbf.Unix(),
		"nbf": nbf.Unix(),
		"exp": nbf.Add(c.TTL).Unix(),
	}
	if c.Roles != nil {
		claims["roles"] = c.Roles
	}
	if c.Scope != "" {
		claims["scope"] = c.Scope
	}
	for name, v := range c.Extra {
		if v == nil {
			delete(claims, name)
		} else {
			claims[name] = v
		}
	}
	t := jwt.NewWithClaims(k.method, claims)
	t.Header["kid"] = k.ID
	return t.SignedString(k.signer)
}

// The files LoadOrCreate keeps in its directory.
const (
	PrivateFile = "signing-key.pem" // PKCS #8, mode 0600: it signs tokens
	JWKSFile    = "jwks.json"       // the public set, for KV_AUTH_JWKS_FILE
)

// WritePrivate writes k as a PKCS #8 PEM file readable by its owner only.
func (k *Key) WritePrivate(path string) error {
	der, err := x509.MarshalPKCS8PrivateKey(k.signer)
	if err != nil {
		return err
	}
	return writeNew(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
}

// ReadPrivate reads a key WritePrivate wrote (or openssl genpkey made).
func ReadPrivate(path string) (*Key, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(raw)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("mint: %s: not a PEM PRIVATE KEY (PKCS #8)", path)
	}
	priv, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("mint: %s: %w", path, err)
	}
	signer, ok := priv.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("mint: %s: %T cannot sign", path, priv)
	}
	k, err := newKey(signer)
	if err != nil {
		return nil, fmt.Errorf("mint: %s: %w", path, err)
	}
	return k, nil
}

// LoadOrCreate returns the Ed25519 key kept in dir, making it and its
// public JWKS (JWKSFile) on the first call; later calls read the key and
// rewrite the JWKS from it, so that the two always agree.
func LoadOrCreate(dir string) (*Key, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	privPath := filepath.Join(dir, PrivateFile)
	k, err := ReadPrivate(privPath)
	if errors.Is(err, fs.ErrNotExist) {
		if k, err = NewEd25519(); err == nil {
			err = k.WritePrivate(privPath)
		}
	}
	if err != nil {
		return nil, err
	}
	jwks, err := JWKS(k)
	if err != nil {
		return nil, err
	}
	if err := writeAtomic(filepath.Join(dir, JWKSFile), jwks, 0o644); err != nil {
		return nil, err
	}
	return k, nil
}

// writeNew creates path with data, failing if it exists: a signing key is
// never overwritten.
func writeNew(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// writeAtomic replaces path with data, so that a reader (the API re-reading
// its JWKS) never sees half a file.
func writeAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// Bearer wraps next so that each request carries Authorization: Bearer
// token, unless it already has an Authorization header.
func Bearer(next http.RoundTripper, token string) http.RoundTripper {
	return bearer{next: next, value: "Bearer " + token}
}

type bearer struct {
	next  http.RoundTripper
	value string
}

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Header.Get("Authorization") == "" {
		r = r.Clone(r.Context())
		r.Header.Set("Authorization", b.value)
	}
	return b.next.RoundTrip(r)
}
