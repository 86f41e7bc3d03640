// Package token turns a key's version into the opaque, URL-safe token that
// clients hold for read-your-writes (a 202's "version", a read's
// KV-Version header) and back, refusing tokens the API never issued.
//
// A token is base64url, without padding, of 36 bytes: the version's
// timestamp (microseconds since the epoch, 8 bytes big-endian), its op id
// (16 bytes), and the first 12 bytes of HMAC-SHA256 over those 24 bytes and
// the key the version belongs to. Binding the key makes a token valid for
// its own key only: a version of another key means nothing here (versions
// order the operations of one key), so using it is refused like a forgery
// rather than waited on in vain.
package token

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/kvstack/kvstack/internal/kv"
)

const (
	versionBytes = 8 + 16
	macBytes     = 12 // 96 bits: forging one takes 2^95 guesses on average, each a request
	rawBytes     = versionBytes + macBytes
	// Len is the length of every token.
	Len = (rawBytes*8 + 5) / 6
	// MinKeyBytes is the shortest signing key accepted.
	MinKeyBytes = 32
)

var enc = base64.RawURLEncoding.Strict()

var (
	// ErrMalformed: the text is not a token at all (length, alphabet).
	ErrMalformed = errors.New("malformed token")
	// ErrForged: a well-formed token that no key of this deployment signed
	// for this key: made up, altered, issued for another key, or signed
	// with a key since retired.
	ErrForged = errors.New("token not issued for this key")
)

// Codec signs and checks tokens. It is safe for concurrent use.
type Codec struct {
	keys []keyMACs
}

// keyMACs pools the HMAC states of one key: a fresh HMAC allocates and
// hashes the key, which a pooled one skips after Reset.
type keyMACs struct{ pool *sync.Pool }

// New returns a codec that signs with keys[0] and accepts a token signed
// with any of keys (so that keys can be rotated without refusing the
// tokens clients hold).
func New(keys ...[]byte) (*Codec, error) {
	if len(keys) == 0 {
		return nil, errors.New("token: no signing key")
	}
	c := &Codec{}
	for i, k := range keys {
		if len(k) < MinKeyBytes {
			return nil, fmt.Errorf("token: key %d is %d bytes, want at least %d", i+1, len(k), MinKeyBytes)
		}
		k := append([]byte(nil), k...)
		c.keys = append(c.keys, keyMACs{pool: &sync.Pool{New: func() any { return hmac.New(sha256.New, k) }}})
	}
	return c, nil
}

// ParseKeys splits KV_TOKEN_KEY: one key, or several separated by commas,
// the first signing and all accepted.
func ParseKeys(s string) [][]byte {
	var keys [][]byte
	for k := range strings.SplitSeq(s, ",") {
		if k = strings.TrimSpace(k); k != "" {
			keys = append(keys, []byte(k))
		}
	}
	return keys
}

// Encode returns the token of version v of key.
func (c *Codec) Encode(key string, v kv.Version) string {
	var raw [rawBytes]byte
	binary.BigEndian.PutUint64(raw[:8], uint64(v.Time.UnixMicro()))
	copy(raw[8:versionBytes], v.OpID[:])
	c.keys[0].sum(raw[versionBytes:versionBytes], raw[:versionBytes], key)
	return enc.EncodeToString(raw[:])
}

// Decode returns the version a token of key stands for. Its errors wrap
// ErrMalformed or ErrForged.
func (c *Codec) Decode(key, token string) (kv.Version, error) {
	var raw [rawBytes]byte
	if len(token) != Len {
		return kv.Version{}, fmt.Errorf("%w: %d characters, want %d", ErrMalformed, len(token), Len)
	}
	if n, err := enc.Decode(raw[:], []byte(token)); err != nil || n != rawBytes {
		return kv.Version{}, fmt.Errorf("%w: not base64url", ErrMalformed)
	}
	var mac [sha256.Size]byte
	for _, k := range c.keys {
		if hmac.Equal(k.sum(mac[:0], raw[:versionBytes], key)[:macBytes], raw[versionBytes:]) {
			return kv.Version{
				Time: time.UnixMicro(int64(binary.BigEndian.Uint64(raw[:8]))).UTC(),
				OpID: uuid.UUID(raw[8:versionBytes]),
			}, nil
		}
	}
	return kv.Version{}, ErrForged
}

// sum appends to dst the HMAC of version and key, truncated to macBytes.
func (k keyMACs) sum(dst, version []byte, key string) []byte {
	h := k.pool.Get().(hash.Hash)
	defer k.pool.Put(h)
	h.Reset()
	h.Write(version)
	h.Write([]byte(key))
	var full [sha256.Size]byte
	return append(dst, h.Sum(full[:0])[:macBytes]...)
}
