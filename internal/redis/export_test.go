package redis

// KeySlot is keySlot, for the tests that compare it with the server's.
var KeySlot = keySlot
