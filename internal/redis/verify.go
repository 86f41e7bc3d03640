package redis

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/kvstack/kvstack/internal/kv"
)

// verified is a cluster cache's record, per slot, of the master whose mark
// it has checked: the node client of go-redis that it found master of the
// slot's shard and holding the shard's mark, its own node id (checkShard).
//
// The consumer's CheckMasters purges a shard whose master changed, but only
// on its next check (KV_CACHE_MASTER_CHECK_INTERVAL): between a replica's
// promotion and that check, a reader would be served by the promoted
// replica the entries the dead master had not replicated, older than a
// write answered "applied" (not linearizable). So Get serves a slot only
// from the master recorded here, and sends the read to that node itself
// (not through the cluster client's routing, which may follow a MOVED to
// another node): whatever answers has shown its mark. A read whose slot's
// master, as go-redis sees it now, is not the one recorded has that node
// checked (one check a node at a time; purged if the mark is another's,
// then marked) and waits for it, a read's time at most, then reads it. It
// does not read PostgreSQL meanwhile: an API replica that did, while
// another served the same key from the cache (which lags PostgreSQL by
// the consumer's apply), let a client see a write, then not (chaos-ha's
// rolling-restart, whose restarted replicas check every shard). A check
// that fails, or takes longer, fails the read with kv.ErrCacheDown: the
// reader reads PostgreSQL, without a fill, as when a master is down.
//
// A record is dropped when go-redis names another master for the slot (a
// failover back to a node recorded earlier is a change twice: the slot was
// recorded for the other node in between), and when a read on the node
// fails (a master killed, demoted: MOVED), with a reload of the cluster's
// map. Not seen: a node killed, started again, and promoted again while
// this process read nothing of its shard (go-redis replaces a dead pooled
// connection without a failed command); the consumer's CheckMasters
// purges it then, as before. On a hit, the cost is MasterForKey (a lookup
// in go-redis' slot map) and an atomic load; no round trip.
type verified struct {
	cc    *goredis.ClusterClient
	slots [clusterSlots]atomic.Pointer[goredis.Client]
	// wait bounds how long a read waits for a check: the time a read
	// may take (REDIS_READ_TIMEOUT per try).
	wait time.Duration
	mu   sync.Mutex
	// checks holds the nodes whose check runs, one at a time per node.
	checks map[*goredis.Client]chan struct{}
}

const clusterSlots = 16384

// checkTimeout bounds a check of a shard's master.
const checkTimeout = 5 * time.Second

// errUnverified is what Get answers for a slot whose master's mark is not
// verified yet: the reader goes to PostgreSQL, and fills nothing.
var errUnverified = fmt.Errorf("redis: the shard's master is not verified yet: %w", kv.ErrCacheDown)

// master is the node to read rkey from, once its mark
// is verified: when it is not, master has the node checked (or joins the
// check that runs) and waits for it, at most v.wait; a check that fails
// or takes longer fails the read with errUnverified.
func (c *Cache) master(ctx context.Context, rkey string) (*goredis.Client, error) {
	v := c.verified
	node, err := v.cc.MasterForKey(ctx, rkey)
	if err != nil {
		return nil, wrap("get: the key's master", err)
	}
	slot := keySlot(rkey)
	if v.slots[slot].Load() == node {
		return node, nil
	}
	t := time.NewTimer(v.wait)
	defer t.Stop()
	select {
	case <-c.check(node):
	case <-t.C:
		return nil, errUnverified
	case <-ctx.Done():
		return nil, errUnverified
	}
	if v.slots[slot].Load() == node {
		return node, nil
	}
	return nil, errUnverified
}

// check runs checkShard on node, unless a check of it runs already, and
// returns a channel closed when that check ends.
func (c *Cache) check(node *goredis.Client) <-chan struct{} {
	v := c.verified
	v.mu.Lock()
	defer v.mu.Unlock()
	if done, ok := v.checks[node]; ok {
		return done
	}
	done := make(chan struct{})
	v.checks[node] = done
	go func() {
		defer func() {
			v.mu.Lock()
			delete(v.checks, node)
			v.mu.Unlock()
			close(done)
		}()
		ctx, cancel := context.WithTimeout(context.Background(), checkTimeout)
		defer cancel()
		if _, _, err := c.checkShard(ctx, node); err != nil {
			// A node gone or demoted: the next read checks the master
			// go-redis finds then.
			v.cc.ReloadState(ctx)
		}
	}()
	return done
}

// record notes that node, master of ranges, holds its own mark.
func (c *Cache) record(node *goredis.Client, ranges []goredis.SlotRange) {
	if c.verified == nil {
		return
	}
	for _, r := range ranges {
		for s := max(r.Start, 0); s <= min(r.End, clusterSlots-1); s++ {
			c.verified.slots[s].Store(node)
		}
	}
}

// forget drops node's records after a read on it failed, and has the
// cluster client reload its map.
func (c *Cache) forget(ctx context.Context, node *goredis.Client) {
	for s := range c.verified.slots {
		c.verified.slots[s].CompareAndSwap(node, nil)
	}
	c.verified.cc.ReloadState(ctx)
}
