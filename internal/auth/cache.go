package auth

import (
	"crypto/sha256"

	lru "github.com/hashicorp/golang-lru/v2"
)

// tokenCache holds verified tokens, so that a client reusing its token
// pays for its signature check once. It is bounded in entries (least
// recently used go first), keyed by SHA-256 of the token (the cache holds
// no usable token, and a collision would need a broken hash), and an entry
// is never used at or past its token's exp. The key set's every load
// empties it (keySet.onChange).
type tokenCache struct {
	lru *lru.Cache[[sha256.Size]byte, *Principal]
}

func newTokenCache(size int) (*tokenCache, error) {
	c, err := lru.New[[sha256.Size]byte, *Principal](size)
	if err != nil {
		return nil, err
	}
	return &tokenCache{lru: c}, nil
}

// get returns the principal of a token verified before, unless it expired
// by now (Unix ns).
func (c *tokenCache) get(sum [sha256.Size]byte, now int64) (*Principal, bool) {
	p, ok := c.lru.Get(sum)
	if !ok {
		return nil, false
	}
	if now >= p.until {
		c.lru.Remove(sum)
		return nil, false
	}
	return p, true
}

func (c *tokenCache) add(sum [sha256.Size]byte, p *Principal) { c.lru.Add(sum, p) }

func (c *tokenCache) purge() { c.lru.Purge() }

func (c *tokenCache) len() int { return c.lru.Len() }
