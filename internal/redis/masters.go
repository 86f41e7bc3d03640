package redis

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"

	goredis "github.com/redis/go-redis/v9"

	"github.com/kvstack/kvstack/internal/kv"
)

// MasterChange is a shard of a Redis Cluster whose master was not the one
// that last marked it, and whose keys CheckMasters therefore purged.
//
// On a single server, it is the server restarted since it marked the
// prefix's keys: Slots is "all", Master and Previous are run ids.
type MasterChange struct {
	Slots  string // the shard's first slot range, "0-5460"
	Master string // the master's node id now
	Addr   string // and its address
	// Previous is the shard's mark: the node id and term (replication
	// id) of the master that marked it, "" when unmarked.
	Previous string
	Purged   int // keys removed
}

// PurgeReport is told of each purge the cache does because a mark was not
// the master's (a shard of a Redis Cluster, or a single server's prefix),
// whichever call found it: the consumer's CheckMasters, an API replica's
// read of a shard whose master it had not checked yet (verified), or, on
// a single server, a new connection's check (markCheck). The first check
// after a promotion or a restart purges, and the later ones find the mark
// current; so the purge is told only to the process that did it (two
// checks at once both purge, and both tell). A check that fails after it
// deleted keys (the mark's SET refused) returns its error and tells
// nothing: the next check purges again. It must be safe for concurrent
// use.
type PurgeReport func(MasterChange)

// reportPurge tells c's report, if any, of ch.
func (c *Cache) reportPurge(ch MasterChange) {
	if c.onPurge != nil {
		c.onPurge(ch)
	}
}

// CheckMasters purges the keys of every shard of a Redis Cluster whose
// master changed, and reports those shards; on a single server, it purges
// the prefix's keys when the server restarted since it marked them (see
// checkServer), and reports that as one change.
//
// Redis replicates asynchronously: a cache update that a dying master
// acknowledged may never reach the replica promoted in its place, which
// then serves the older entry while PostgreSQL holds the newer, until its
// TTL. So each master marks its shard with its own node id and term (an
// internal key under the prefix, in one of the shard's slots; the term is
// new at each promotion, see checkShard); a replica promoted with the
// shard's data has the mark of the master it replaced, or its own of an
// earlier term, and a node that lost its data has none. Either way the shard's keys are purged, on
// that master alone, and the mark written anew; readers refill from
// PostgreSQL. The purge can only run once the promotion is done, and by
// then the old master has stopped accepting writes (a master cut off from
// the majority refuses them after cluster-node-timeout, before any replica
// may take over), so no lost update can land after it. A fill that read
// PostgreSQL before such an update could, but reads bound their loads
// (kv.Service's 5 s), less than a failover takes.
//
// The mark is in Redis, not in the caller: any number of consumers may
// check, a consumer started after the failover still sees it, and a
// purge by two of them at once is only done twice.
//
// Between a promotion and the consumer's next check, Get does not serve
// the promoted replica's entries: it checks each master itself (verified).
func (c *Cache) CheckMasters(ctx context.Context) ([]MasterChange, error) {
	cc, ok := c.client.(*goredis.ClusterClient)
	if !ok {
		var addr string
		if cl, ok := c.client.(*goredis.Client); ok {
			addr = cl.Options().Addr
		}
		ch, changed, err := c.checkServer(ctx, c.client, addr)
		if !changed {
			return nil, err
		}
		return []MasterChange{ch}, err
	}
	var mu sync.Mutex
	var changes []MasterChange
	// ForEachMaster reloads the client's view of the cluster first: a
	// failover is seen even when no command was redirected.
	err := cc.ForEachMaster(ctx, func(ctx context.Context, node *goredis.Client) error {
		ch, changed, err := c.checkShard(ctx, node)
		if changed {
			mu.Lock()
			changes = append(changes, ch)
			mu.Unlock()
		}
		return err
	})
	return changes, err
}

// checkShard compares the mark of the shard that node is master of with
// the node's own mark: its node id and its term, the replication id that
// Redis draws anew at each promotion and start (see verified). Every call
// goes to node itself, so a node that is no longer master answers MOVED,
// an error, and the next check sees the shard's new master. A node found
// holding its own mark is recorded as verified for its slots, in that
// term, for Get.
//
// A mark of the node id alone did not tell a master promoted again from
// the same master before its demotion: a node demoted, cut off from the
// new master before that one was marked, and promoted again holds its own
// id's mark, and not what the other master acknowledged in between.
func (c *Cache) checkShard(ctx context.Context, node *goredis.Client) (MasterChange, bool, error) {
	ch := MasterChange{Addr: node.Options().Addr}
	var err error
	if ch.Master, err = node.ClusterMyID(ctx).Result(); err != nil {
		return ch, false, wrap("check masters: cluster myid", err)
	}
	term, err := masterTerm(ctx, node)
	if err != nil {
		return ch, false, err
	}
	ranges, err := ownSlots(ctx, node, ch.Master)
	if err != nil {
		return ch, false, err
	}
	slots := ranges[0]
	ch.Slots = fmt.Sprintf("%d-%d", slots.Start, slots.End)
	key := c.markKey(slots)
	mark := ch.Master + " " + term
	ch.Previous, err = node.Get(ctx, key).Result()
	if err != nil && !errors.Is(err, goredis.Nil) {
		return ch, false, wrap("check masters: read the mark of "+ch.Slots, err)
	}
	if ch.Previous == mark {
		c.record(node, term, ranges)
		return ch, false, nil
	}
	if ch.Purged, err = c.purgeNode(ctx, node); err != nil {
		return ch, false, err
	}
	if err := node.Set(ctx, key, mark, 0).Err(); err != nil {
		return ch, false, wrap("check masters: mark "+ch.Slots, err)
	}
	c.reportPurge(ch)
	c.record(node, term, ranges)
	return ch, true, nil
}

// masterTerm is the replication id of node, a master: new at each of its
// promotions and starts, kept while it stays master.
func masterTerm(ctx context.Context, node *goredis.Client) (string, error) {
	info, err := node.Info(ctx, "replication").Result()
	if err != nil {
		return "", wrap("check masters: info replication", err)
	}
	term := infoField(info, "master_replid")
	if role := infoField(info, "role"); role != "master" || term == "" {
		return "", fmt.Errorf("redis check masters: %s is %s (replication id %q), not a master: %w",
			node.Options().Addr, role, term, kv.ErrUnavailable)
	}
	return term, nil
}

// ownSlots is the slot ranges of the node whose id is given, as it sees
// itself; the shard's mark is in the first.
func ownSlots(ctx context.Context, node *goredis.Client, id string) ([]goredis.SlotRange, error) {
	shards, err := node.ClusterShards(ctx).Result()
	if err != nil {
		return nil, wrap("check masters: cluster shards", err)
	}
	for _, s := range shards {
		for _, n := range s.Nodes {
			if n.ID == id && n.Role == "master" && len(s.Slots) > 0 {
				return s.Slots, nil
			}
		}
	}
	return nil, fmt.Errorf("redis check masters: %s is master of no slot: %w", node.Options().Addr, kv.ErrUnavailable)
}

// markKey is the first key "<prefix>\x00master-mark:N" that hashes into
// slots: an internal key (see internalKey), which no client key can be.
func (c *Cache) markKey(slots goredis.SlotRange) string {
	for n := 0; ; n++ {
		key := c.internalKey("master-mark:" + strconv.Itoa(n))
		if s := int64(keySlot(key)); s >= slots.Start && s <= slots.End {
			return key
		}
	}
}

// keySlot is the Redis Cluster slot of key: CRC16 (XMODEM) of its hash tag
// (what lies between the first '{' and the next '}', when not empty), or
// of the whole key, modulo 16384.
func keySlot(key string) uint16 {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			key = key[i+1 : i+1+j]
		}
	}
	var crc uint16
	for i := 0; i < len(key); i++ {
		crc ^= uint16(key[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc % 16384
}

// checkServer purges the prefix's keys on a single server that restarted
// since it last marked them, and marks them with the server's run now.
//
// A single Redis stopped and started again reloads its dump (RDB or AOF):
// entries that may be older than PostgreSQL, since while it was down
// readers went to PostgreSQL and saw newer writes, and the consumer could
// not apply them. Served, such an entry takes a later read back in time
// (a plain GET returns an older value than one before it: not
// linearizable). So the server's mark, an internal key under the prefix,
// holds the run_id of INFO server, which is new on every start; a server
// whose mark is another run's (or which has none) has its prefix's keys
// purged (SCAN and UNLINK within the prefix, never FLUSHDB: the server may
// be shared), then the mark written anew, and readers refill from
// PostgreSQL.
//
// NewClient runs it on every connection it dials, before that connection
// serves a command (markCheck): a restart closes every connection, so no
// read reaches a restarted server's dump before the check, and on a
// server that runs on it costs one GET of the mark per new connection.
// The consumer's periodic CheckMasters runs it too. Two purges at once
// are only done twice: the mark is written after a purge completes, so a
// connection that finds it current finds no entry of the dump either.
func (c *Cache) checkServer(ctx context.Context, node goredis.Cmdable, addr string) (MasterChange, bool, error) {
	ch := MasterChange{Slots: "all", Addr: addr}
	info, err := node.Info(ctx, "server").Result()
	if err != nil {
		return ch, false, wrap("check server: info", err)
	}
	if ch.Master = infoField(info, "run_id"); ch.Master == "" {
		return ch, false, fmt.Errorf("redis check server: INFO server has no run_id: %w", kv.ErrUnavailable)
	}
	key := c.internalKey("server-mark")
	ch.Previous, err = node.Get(ctx, key).Result()
	if err != nil && !errors.Is(err, goredis.Nil) {
		return ch, false, wrap("check server: read the mark", err)
	}
	if ch.Previous == ch.Master {
		return ch, false, nil
	}
	if ch.Purged, err = c.purgeNode(ctx, node); err != nil {
		return ch, false, err
	}
	if err := node.Set(ctx, key, ch.Master, 0).Err(); err != nil {
		return ch, false, wrap("check server: mark", err)
	}
	c.reportPurge(ch)
	return ch, true, nil
}

// infoField is the value of name in the text of an INFO reply.
func infoField(info, name string) string {
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(line, name+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// markCheck is the OnConnect hook of a single server's client: each
// connection runs checkServer for prefix before it serves a command, one
// at a time in the process, so that the connections dialled at once after
// a restart purge once, not each. A purge is told to onPurge.
func markCheck(prefix, addr string, onPurge PurgeReport) func(context.Context, *goredis.Conn) error {
	c := &Cache{prefix: prefix, onPurge: onPurge}
	var mu sync.Mutex
	return func(ctx context.Context, cn *goredis.Conn) error {
		mu.Lock()
		defer mu.Unlock()
		_, _, err := c.checkServer(ctx, cn, addr)
		return err
	}
}
