package redis

import "context"

// KeySlot is keySlot, for the tests that compare it with the server's.
var KeySlot = keySlot

// InternalMark starts the names of the cache's own keys, after the prefix.
const InternalMark = internalMark

// ErrUnverified is what a cluster cache's Get answers (a miss) when its
// check of the key's master outlasts the read's wait, the master answering.
var ErrUnverified = errUnverified

// ErrUncheckable is what it answers when that check fails, or the master
// does not answer it.
var ErrUncheckable = errUncheckable

// VerifiedMaster is what a cluster cache's Get adds to a hit before it
// reads: the key's master, checked against the one whose mark it verified.
func VerifiedMaster(ctx context.Context, c *Cache, key string) error {
	_, err := c.master(ctx, c.prefix+key)
	return err
}
