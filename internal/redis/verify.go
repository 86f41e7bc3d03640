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
// master, as go-redis sees it now, is not the one recorded fails with
// kv.ErrCacheDown, and the reader reads PostgreSQL without filling, while
// one check of that node runs in the background; reads are served from the
// cache again once it passed (purged if the mark was another's, then
// marked). No fill lands meanwhile on the unverified shard: a fill that
// read PostgreSQL before the check's purge could otherwise land after it
// and cache an entry older than an apply the purge removed.
//
// A record is dropped when go-redis names another master for the slot (a
// failover back to a node recorded earlier is a change twice: the slot was
// recorded for the other node in between), and when a read on the node
// fails (a master killed, demoted: MOVED), with a reload of the cluster's
// map. On a hit, the cost is MasterForKey (a lookup in go-redis' slot map)
// and one atomic load; no round trip.
type verified struct {
	cc    *goredis.ClusterClient
	slots [clusterSlots]atomic.Pointer[goredis.Client]
	// checking holds the nodes whose check runs, one at a time per node.
	checking sync.Map
}

const clusterSlots = 16384

// checkTimeout bounds a background check of a shard's master.
const checkTimeout = 5 * time.Second

// errUnverified is what Get answers for a slot whose master's mark is not
// verified yet: the reader goes to PostgreSQL, and fills nothing.
var errUnverified = fmt.Errorf("redis: the shard's master is not verified yet: %w", kv.ErrCacheDown)

// master is the node to read rkey from, when its mark is verified; else it
// starts a check of the slot's master and fails with errUnverified.
func (c *Cache) master(ctx context.Context, rkey string) (*goredis.Client, error) {
	node, err := c.verified.cc.MasterForKey(ctx, rkey)
	if err != nil {
		return nil, wrap("get: the key's master", err)
	}
	if c.verified.slots[keySlot(rkey)].Load() == node {
		return node, nil
	}
	c.checkInBackground(node)
	return nil, errUnverified
}

// checkInBackground runs checkShard on node unless a check of it runs.
func (c *Cache) checkInBackground(node *goredis.Client) {
	if _, running := c.verified.checking.LoadOrStore(node, struct{}{}); running {
		return
	}
	go func() {
		defer c.verified.checking.Delete(node)
		ctx, cancel := context.WithTimeout(context.Background(), checkTimeout)
		defer cancel()
		if _, _, err := c.checkShard(ctx, node); err != nil {
			// A node gone or demoted: the next read checks the master
			// go-redis finds then.
			c.verified.cc.ReloadState(ctx)
		}
	}()
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
