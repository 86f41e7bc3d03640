package redis

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/kvstack/kvstack/internal/kv"
)

// Cache is the versioned, tombstone-keeping cache described in the package
// doc. It implements kv.Cache. It is safe for concurrent use.
type Cache struct {
	client       goredis.UniversalClient
	prefix       string
	ttl          time.Duration
	tombstoneTTL time.Duration
	// circuit skips Redis on the read path while it is known down.
	circuit *circuit
	// verified is, on a Redis Cluster, the masters whose marks Get has
	// checked before it reads from them (nil on a single server).
	verified *verified
	// onPurge is told of each purge of a shard or server whose mark was
	// not its master's (nil: nobody).
	onPurge PurgeReport
}

var _ kv.Cache = (*Cache)(nil)

// internalMark starts the name, after the prefix, of every key the cache
// keeps for itself (the shard marks of CheckMasters). A client key never
// starts with it: kv.Limits.ValidateKey refuses control characters, and
// every key that reaches the cache (a request's, a message's, a row
// written by either) has passed it. So <prefix><client key> and
// <prefix>\x00<internal name> are two namespaces that cannot meet.
const internalMark = "\x00"

// internalKey is the Redis key of one of the cache's own keys.
func (c *Cache) internalKey(name string) string { return c.prefix + internalMark + name }

// NewCache returns a cache that keeps its keys under cfg.KeyPrefix, and
// tells onPurge (nil: nobody) of each purge it does because a master had
// not marked its keys (see PurgeReport); a client from NewClient needs
// the same onPurge. The client is the caller's to close.
func NewCache(client goredis.UniversalClient, cfg Config, onPurge PurgeReport) *Cache {
	c := &Cache{
		client:       client,
		onPurge:      onPurge,
		prefix:       cfg.KeyPrefix,
		ttl:          cfg.TTL,
		tombstoneTTL: cfg.TombstoneTTL,
		circuit:      newCircuit(cfg),
	}
	if cc, ok := client.(*goredis.ClusterClient); ok {
		c.verified = &verified{cc: cc, checks: map[*goredis.Client]*check{},
			wait: time.Duration(max(cfg.MaxRetries, 0)+1) * cfg.ReadTimeout}
	}
	return c
}

// Get returns the cached entry for key, which is a tombstone (Deleted true)
// when the key's last known operation was a delete, or kv.ErrCacheMiss. While
// Redis is known down it fails at once with kv.ErrCacheDown (see circuit).
// On a Redis Cluster, a read of a shard whose master's check outlasts the
// read's wait is a miss, for the reader to fill, while the master answers
// the check, and kv.ErrCacheDown when it does not (see verified).
func (c *Cache) Get(ctx context.Context, key string) (kv.Entry, error) {
	if c.circuit.skip() {
		return kv.Entry{}, errCircuitOpen
	}
	e, err := c.get(ctx, key)
	c.circuit.observe(ctx, err)
	return e, err
}

func (c *Cache) get(ctx context.Context, key string) (kv.Entry, error) {
	rkey := c.prefix + key
	var fields []any
	var err error
	if c.verified != nil {
		fields, err = c.readVerified(ctx, rkey)
		if errors.Is(err, kv.ErrUnavailable) || errors.Is(err, errUnverified) {
			// No master to read (unknown, or not verified): said already.
			return kv.Entry{}, err
		}
	} else {
		fields, err = c.client.HMGet(ctx, rkey, fieldVersion, fieldDeleted, fieldValue).Result()
	}
	if goredis.HasErrorPrefix(err, "WRONGTYPE") {
		// Not a cache entry but what an older kvstack left under this name
		// (see casScript): a miss, which the reader's Fill replaces.
		return kv.Entry{}, fmt.Errorf("redis get: %w", kv.ErrCacheMiss)
	}
	if err != nil {
		return kv.Entry{}, wrap("get", err)
	}
	ver, _ := fields[0].(string)
	if ver == "" {
		return kv.Entry{}, fmt.Errorf("redis get: %w", kv.ErrCacheMiss)
	}
	v, err := kv.ParseVersion(ver)
	if err != nil {
		// Not written by this package. Not a miss either: a fill would be
		// compared against the bad version, so have the caller skip the cache.
		return kv.Entry{}, fmt.Errorf("redis get: %w: %w: %w", errCorrupt, kv.ErrUnavailable, err)
	}
	deleted, _ := fields[1].(string)
	e := kv.Entry{Key: key, Version: v, Deleted: deleted == "1"}
	if !e.Deleted {
		e.Value, _ = fields[2].(string)
	}
	return e, nil
}

// Fill caches e unless the cache holds the same or a newer version of its
// key, and reports whether it stored e. Readers call it with what they read
// from PostgreSQL, however old that has become. While Redis is known down it
// stores nothing and fails at once with kv.ErrCacheDown (see circuit).
func (c *Cache) Fill(ctx context.Context, e kv.Entry) (bool, error) {
	if c.circuit.skip() {
		return false, errCircuitOpen
	}
	key, args := c.casArgs(e)
	stored, err := casScript.Run(ctx, c.client, []string{key}, args...).Int()
	c.circuit.observe(ctx, err)
	if err != nil {
		return false, wrap("fill", err)
	}
	return stored == 1, nil
}

// Apply compare-and-sets every entry in one pipelined round trip; each
// entry's key only moves forward, as with Fill, and entries repeating a key
// are fine. The consumer calls it after committing a batch to PostgreSQL. On
// error some entries may have been stored and others not: the caller may
// retry the whole batch, which is idempotent.
func (c *Cache) Apply(ctx context.Context, entries []kv.Entry) error {
	if len(entries) == 0 {
		return nil
	}
	err := c.applyOnce(ctx, entries)
	if goredis.HasErrorPrefix(err, "NOSCRIPT") {
		// EVALSHA cannot fall back to EVAL inside a pipeline: load the script
		// (the server restarted or flushed its scripts) and run the batch again.
		if err := casScript.Load(ctx, c.client).Err(); err != nil {
			return wrap("apply: load script", err)
		}
		err = c.applyOnce(ctx, entries)
	}
	if err != nil {
		return wrap(fmt.Sprintf("apply %d entries", len(entries)), err)
	}
	return nil
}

func (c *Cache) applyOnce(ctx context.Context, entries []kv.Entry) error {
	_, err := c.client.Pipelined(ctx, func(p goredis.Pipeliner) error {
		for _, e := range entries {
			key, args := c.casArgs(e)
			casScript.EvalSha(ctx, p, []string{key}, args...)
		}
		return nil
	})
	return err
}

func (c *Cache) casArgs(e kv.Entry) (string, []any) {
	deleted, value, ttl := "0", e.Value, c.ttl
	if e.Deleted {
		deleted, value, ttl = "1", "", c.tombstoneTTL
	}
	return c.prefix + e.Key, []any{e.Version.String(), deleted, value, ttl.Milliseconds()}
}

// Ping checks that Redis answers; its answer opens or closes the read
// path's circuit.
func (c *Cache) Ping(ctx context.Context) error {
	err := c.client.Ping(ctx).Err()
	c.circuit.pinged(ctx, err)
	if err != nil {
		return wrap("ping", err)
	}
	return nil
}

// errCorrupt marks an entry this package did not write.
var errCorrupt = errors.New("corrupt entry")

// Purge removes every key under the cache's prefix, on every master of a
// cluster, in batches (SCAN, then UNLINK, which frees memory off the main
// thread; one UNLINK per key, pipelined, since the keys of one node belong
// to many slots). The consumer calls it when it could not apply too many
// committed entries during an outage, so that readers refill from
// PostgreSQL instead of serving what Redis missed.
//
// A reader whose PostgreSQL read preceded one of the lost applies may still
// fill its old row after the purge. Readers bound their loads (kv.Service's
// load timeout), so purging again once that bound has passed since the last
// lost apply closes the window.
func (c *Cache) Purge(ctx context.Context) error {
	if cc, ok := c.client.(*goredis.ClusterClient); ok {
		return cc.ForEachMaster(ctx, func(ctx context.Context, node *goredis.Client) error {
			_, err := c.purgeNode(ctx, node)
			return err
		})
	}
	_, err := c.purgeNode(ctx, c.client)
	return err
}

// purgeNode removes the keys under the prefix on one server, and counts them.
func (c *Cache) purgeNode(ctx context.Context, node goredis.Cmdable) (int, error) {
	match := escapeGlob(c.prefix) + "*"
	var cursor uint64
	removed := 0
	for {
		keys, next, err := node.Scan(ctx, cursor, match, purgeBatch).Result()
		if err != nil {
			return removed, wrap("purge: scan", err)
		}
		if len(keys) > 0 {
			if _, err := node.Pipelined(ctx, func(p goredis.Pipeliner) error {
				for _, k := range keys {
					p.Unlink(ctx, k)
				}
				return nil
			}); err != nil {
				return removed, wrap("purge: unlink", err)
			}
			removed += len(keys)
		}
		if next == 0 {
			return removed, nil
		}
		cursor = next
	}
}

// purgeBatch is the SCAN page size, and so the most keys one UNLINK removes.
const purgeBatch = 1000

// escapeGlob quotes the bytes that SCAN MATCH treats as a pattern, so that a
// prefix matches only itself.
func escapeGlob(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '*', '?', '[', ']', '\\':
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// wrap translates a driver error: goredis.Nil is a miss, anything else means
// Redis could not serve the call. The driver error stays in the chain.
func wrap(op string, err error) error {
	if errors.Is(err, goredis.Nil) {
		return fmt.Errorf("redis %s: %w", op, kv.ErrCacheMiss)
	}
	return fmt.Errorf("redis %s: %w: %w", op, kv.ErrUnavailable, err)
}
