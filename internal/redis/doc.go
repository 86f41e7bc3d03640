// Package redis is the Redis adapter of kvstack: the read-through cache that
// the API fills from PostgreSQL on a miss and the consumer updates after each
// committed batch.
//
// # Coherence
//
// Readers and consumers write the cache concurrently, and a reader's fill
// can arrive long after the row it carries was read. Plain SET/DEL would let
// a reader that read an old row overwrite the newer value the consumer has
// just cached, or resurrect a key the consumer has just deleted. So every
// cached key is a hash under <prefix><key>:
//
//	v    the entry's kv.Version in its String form (zero-padded microseconds
//	     then the op id), whose byte order is the version order
//	d    "1" for a tombstone, "0" for a live value
//	val  the value ("" for a tombstone)
//
// and every write, a reader's Fill as well as the consumer's Apply, is one
// Lua compare-and-set: it stores the entry only when the key is absent or
// holds a strictly older version, then sets the TTL. Whatever the order in
// which fills and applies land, a key only moves forward in version order,
// so once writes stop it holds the newest version any writer offered, which
// is the newest version committed in PostgreSQL.
//
// Deletes are cached as tombstones (with their own, shorter TTL) instead of
// removing the key: an absent key accepts any version, so removing it would
// let a slow reader's fill bring the deleted value back.
//
// # Limits of the scheme
//
// The guarantee holds while Redis keeps what it was told. Anything that
// makes Redis forget a newer entry reopens the window for a fill carrying an
// older row: a TTL shorter than a reader's fill latency (the TTLs here are
// minutes, fills take milliseconds), eviction under maxmemory, a restart
// without persistence, or an Apply lost in an outage. For the last, the
// consumer drops the cache with Purge (see its doc for the fills in flight).
// On a Redis Cluster, a failover can lose Applies the dying master
// acknowledged but had not replicated: a shard whose master did not mark it
// is purged (CheckMasters), and Get reads a shard only from a master whose
// mark it checked (verified). A single server restarted reloads a dump
// older than PostgreSQL: each new connection purges the prefix's keys of a
// server whose run did not mark them, before it serves a command
// (checkServer).
//
// # Failure
//
// Timeouts are short and retries few, so that an unreachable Redis fails a
// read in milliseconds and the service degrades to PostgreSQL instead of
// hanging. goredis.Nil becomes kv.ErrCacheMiss; every other failure wraps
// kv.ErrUnavailable and keeps the driver error in the chain. On a single
// server, the first timeout opens a circuit: reads skip Redis, without
// waiting, but for one a second that tries it, until Redis answers again
// (circuit). Values never
// appear in errors, logs or span attributes.
package redis
