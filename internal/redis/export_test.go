package redis

// KeySlot is keySlot, for the tests that compare it with the server's.
var KeySlot = keySlot

// InternalMark starts the names of the cache's own keys, after the prefix.
const InternalMark = internalMark
