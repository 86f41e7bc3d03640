package redis

import "context"

// KeySlot is keySlot, for the tests that compare it with the server's.
var KeySlot = keySlot

// InternalMark starts the names of the cache's own keys, after the prefix.
const InternalMark = internalMark

// ErrUnverified is what a cluster cache's Get answers while it checks the
// mark of the key's master.
var ErrUnverified = errUnverified

// VerifiedMaster is what a cluster cache's Get adds to a hit before it
// reads: the key's master, checked against the one whose mark it verified.
func VerifiedMaster(ctx context.Context, c *Cache, key string) error {
	_, err := c.master(ctx, c.prefix+key)
	return err
}
