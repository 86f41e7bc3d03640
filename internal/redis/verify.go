package redis

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/kvstack/kvstack/internal/kv"
)

// verified is a cluster cache's record, per slot, of the master whose mark
// it has checked: the node client of go-redis that it found master of the
// slot's shard and holding the shard's mark for its current term (checkShard).
//
// The consumer's CheckMasters purges a shard whose master changed, but only
// on its next check (KV_CACHE_MASTER_CHECK_INTERVAL): between a replica's
// promotion and that check, a reader would be served by the promoted
// replica the entries the dead master had not replicated, older than a
// write answered "applied" (not linearizable). So Get serves a slot only
// from the master recorded here, and sends the read to that node itself
// (not through the cluster client's routing, which may follow a MOVED to
// another node), with the node's INFO replication after it in the same
// round trip: the answer is served only if the node is still master in the
// term it was checked in, so whatever answers has shown its mark. A
// read whose slot's master, as go-redis sees it now, is not the one
// recorded, or whose node's term has changed, has that node checked (one
// check a node at a time; purged if the mark is not the node's in its
// current term, then marked) and waits for it, a read's time at most,
// then reads it. It does not read PostgreSQL meanwhile: an API replica
// that did, while another served the same key from the cache (which lags
// PostgreSQL by the consumer's apply), let a client see a write, then not
// (chaos-ha's rolling-restart, whose restarted replicas check every
// shard). A check that takes longer fails the read with errUnverified, a
// miss: the reader reads PostgreSQL and fills the cache; one that fails,
// or that the node does not answer, with errUncheckable: cache down.
//
// A term is the node's replication id (master_replid of INFO replication):
// Redis draws a new one at every promotion and every start, and a master
// keeps its own for as long as it stays master. So a node demoted and
// promoted again (two failovers, CLUSTER FAILOVER TAKEOVER twice), or
// killed, started again and promoted again, while this process read
// nothing of its shard, answers its first read with a term that is not
// the one checked, whatever go-redis' map and connections still say.
//
// A record is also dropped when a read on the node fails (a master killed,
// demoted: MOVED), with a reload of the cluster's map. On a hit, the cost
// is MasterForKey (a lookup in go-redis' slot map), an atomic load, and
// INFO replication pipelined after the HMGET (no round trip more: about
// 1.7 µs of the server's time beside HMGET's 0.4 µs, and a search in its
// answer of about 400 bytes). A Lua script doing both on the server cost
// 17 µs: Redis 7.0's script call alone took 10.
type verified struct {
	cc    *goredis.ClusterClient
	slots [clusterSlots]atomic.Pointer[record]
	// wait bounds how long a read waits for a check: the time a read
	// may take (REDIS_READ_TIMEOUT per try).
	wait time.Duration
	mu   sync.Mutex
	// checks holds the nodes whose check runs, one at a time per node.
	checks map[*goredis.Client]*check
}

// record is a slot's verified master: its node client, and its term
// (replication id) when the check found it holding its mark.
type record struct {
	node *goredis.Client
	term string
	// termLine is the line of INFO replication that names the term.
	termLine string
}

// inTerm reports whether info, the node's INFO replication, shows it
// master still, in the record's term.
func (r *record) inTerm(info string) bool {
	return strings.Contains(info, "\nrole:master\r") && strings.Contains(info, r.termLine)
}

const clusterSlots = 16384

// checkTimeout bounds a check of a shard's master.
const checkTimeout = 5 * time.Second

// errUnverified is what Get answers for a slot whose master's check
// outlasted the read's wait, the master answering it (a purge of a big
// shard): a miss, so that the reader, who reads PostgreSQL, fills the
// cache with what it read before it answers. Without the fill (when this
// was kv.ErrCacheDown), a reader answered a state from PostgreSQL that the
// cache, lagging PostgreSQL by the consumer's apply, could still serve
// older to the next reader once the check was done: a write seen, then
// not. With it, the cache holds that state or a newer one by the time the
// reader answers (the fill only moves a key forward; a purge that removes
// it makes the next read a miss). The fill goes where go-redis routes the
// key, verified or not: a purge of that node after it only removes it.
var errUnverified = fmt.Errorf("redis: the shard's master is not verified yet: %w", kv.ErrCacheMiss)

// errUncheckable is what Get answers for a slot whose master's check
// failed, or did not get the master's first answer within the read's
// wait (a master frozen, or gone): the cache is down for that read, and
// the reader, who reads PostgreSQL, fills nothing (a fill would wait on
// the same node, doubling the read's time). The window that
// errUnverified closes stays open then, as with any cache down.
var errUncheckable = fmt.Errorf("redis: the shard's master could not be checked: %w", kv.ErrCacheDown)

// readVerified reads rkey's fields from the slot's verified master, and
// the master's INFO replication in the same round trip, after the read:
// fields are served only while that master is still in the term it was
// checked in (see verified). A master found in another term has its
// records dropped and is checked again, once.
func (c *Cache) readVerified(ctx context.Context, rkey string) ([]any, error) {
	for again := false; ; again = true {
		rec, err := c.master(ctx, rkey)
		if err != nil {
			return nil, err
		}
		var fields *goredis.SliceCmd
		var info *goredis.StringCmd
		_, err = rec.node.Pipelined(ctx, func(p goredis.Pipeliner) error {
			fields = p.HMGet(ctx, rkey, fieldVersion, fieldDeleted, fieldValue)
			info = p.Info(ctx, "replication")
			return nil
		})
		if err == nil || errors.Is(err, goredis.Nil) || goredis.HasErrorPrefix(err, "WRONGTYPE") {
			if !rec.inTerm(info.Val()) {
				if again {
					return nil, errUncheckable
				}
				c.drop(rec)
				continue
			}
			return fields.Result()
		}
		if ctx.Err() == nil {
			c.forget(ctx, rec.node)
		}
		return nil, err
	}
}

// master is the record of the node to read rkey from, once its mark is
// verified: when it is not, master has the node checked (or joins the
// check that runs) and waits for it, at most v.wait; a check that takes
// longer fails the read with errUnverified while the node answers it,
// errUncheckable when it does not or the check fails.
func (c *Cache) master(ctx context.Context, rkey string) (*record, error) {
	v := c.verified
	node, err := v.cc.MasterForKey(ctx, rkey)
	if err != nil {
		return nil, wrap("get: the key's master", err)
	}
	slot := keySlot(rkey)
	if r := v.slots[slot].Load(); r != nil && r.node == node {
		return r, nil
	}
	t := time.NewTimer(v.wait)
	defer t.Stop()
	chk := c.check(node)
	select {
	case <-chk.done:
	case <-t.C:
		if chk.answered.Load() {
			return nil, errUnverified
		}
		return nil, errUncheckable
	case <-ctx.Done():
		return nil, errUncheckable
	}
	if r := v.slots[slot].Load(); r != nil && r.node == node {
		return r, nil
	}
	return nil, errUncheckable
}

// check is a check of a node that runs: done is closed when it ends;
// answered is set once the node has answered it.
type check struct {
	done     chan struct{}
	answered atomic.Bool
}

// check runs checkShard on node, unless a check of it runs already, and
// returns that check.
func (c *Cache) check(node *goredis.Client) *check {
	v := c.verified
	v.mu.Lock()
	defer v.mu.Unlock()
	if chk, ok := v.checks[node]; ok {
		return chk
	}
	chk := &check{done: make(chan struct{})}
	v.checks[node] = chk
	go func() {
		defer func() {
			v.mu.Lock()
			delete(v.checks, node)
			v.mu.Unlock()
			close(chk.done)
		}()
		ctx, cancel := context.WithTimeout(context.Background(), checkTimeout)
		defer cancel()
		if node.Ping(ctx).Err() == nil {
			chk.answered.Store(true)
		}
		if _, _, err := c.checkShard(ctx, node); err != nil {
			// A node gone or demoted: the next read checks the master
			// go-redis finds then.
			v.cc.ReloadState(ctx)
		}
	}()
	return chk
}

// record notes that node, master of ranges, holds its own mark in term.
func (c *Cache) record(node *goredis.Client, term string, ranges []goredis.SlotRange) {
	if c.verified == nil {
		return
	}
	rec := &record{node: node, term: term, termLine: "\nmaster_replid:" + term + "\r"}
	for _, r := range ranges {
		for s := max(r.Start, 0); s <= min(r.End, clusterSlots-1); s++ {
			c.verified.slots[s].Store(rec)
		}
	}
}

// drop drops the slots recorded with rec.
func (c *Cache) drop(rec *record) {
	for s := range c.verified.slots {
		c.verified.slots[s].CompareAndSwap(rec, nil)
	}
}

// forget drops node's records after a read on it failed, and has the
// cluster client reload its map.
func (c *Cache) forget(ctx context.Context, node *goredis.Client) {
	for s := range c.verified.slots {
		if r := c.verified.slots[s].Load(); r != nil && r.node == node {
			c.verified.slots[s].CompareAndSwap(r, nil)
		}
	}
	c.verified.cc.ReloadState(ctx)
}
