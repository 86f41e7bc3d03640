package redis_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	goredis "github.com/redis/go-redis/v9"

	"github.com/kvstack/kvstack/internal/engine/enginetest"
	"github.com/kvstack/kvstack/internal/kv"
	"github.com/kvstack/kvstack/internal/redis"
	"github.com/kvstack/kvstack/internal/redis/redistest"
)

// privateCluster is a Redis Cluster of three masters and three replicas
// that this package starts on first use (TestMain removes it).
var privateCluster = enginetest.RedisCluster{TLS: true} // and over TLS, for TestClusterTLS

// newClusterCache is newCache on the private Redis Cluster: the client is
// a cluster client, as REDIS_ADDR listing the nodes makes it.
func newClusterCache(t *testing.T) (*redis.Cache, *goredis.ClusterClient, redis.Config) {
	t.Helper()
	t.Setenv("REDIS_ADDR", privateCluster.Addr(t))
	client, cfg := redistest.MustClient(t)
	cc, ok := client.(*goredis.ClusterClient)
	if !ok {
		t.Fatalf("REDIS_ADDR=%s made a %T, want a cluster client", cfg.Addr, client)
	}
	return redis.NewCache(client, cfg, nil), cc, cfg
}

// keysOnEveryMaster returns n keys and checks that every master holds some.
func keysOnEveryMaster(t *testing.T, ctx context.Context, cc *goredis.ClusterClient, prefix string, n int) []string {
	t.Helper()
	keys := make([]string, n)
	masters := map[string]bool{}
	for i := range keys {
		keys[i] = fmt.Sprintf("k%d", i)
		node, err := cc.MasterForKey(ctx, prefix+keys[i])
		if err != nil {
			t.Fatalf("master of %s: %v", keys[i], err)
		}
		masters[node.Options().Addr] = true
	}
	if len(masters) != 3 {
		t.Fatalf("%d keys fall on %d masters, want all 3", n, len(masters))
	}
	return keys
}

// countOnMasters counts the keys under prefix on each master.
func countOnMasters(t *testing.T, ctx context.Context, cc *goredis.ClusterClient, prefix string) map[string]int {
	t.Helper()
	var mu sync.Mutex
	counts := map[string]int{}
	err := cc.ForEachMaster(ctx, func(ctx context.Context, node *goredis.Client) error {
		iter := node.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		n := 0
		for iter.Next(ctx) {
			n++
		}
		mu.Lock()
		counts[node.Options().Addr] = n
		mu.Unlock()
		return iter.Err()
	})
	if err != nil {
		t.Fatalf("count keys on the masters: %v", err)
	}
	return counts
}

// The compare-and-set script, on keys spread over every master: one Apply
// of a batch that spans them (go-redis splits the pipeline per node), a
// Fill that brings an older version refused, tombstones kept; after SCRIPT
// FLUSH on every master, Fill and Apply load the script again.
func TestClusterCompareAndSet(t *testing.T) {
	ctx := testContext(t)
	c, cc, cfg := newClusterCache(t)
	keys := keysOnEveryMaster(t, ctx, cc, cfg.KeyPrefix, 30)
	// The shards marked, as the consumer does when it starts: the first
	// read of an unmarked shard purges it.
	if _, err := c.CheckMasters(ctx); err != nil {
		t.Fatal(err)
	}

	var batch []kv.Entry
	for i, k := range keys {
		if i%3 == 0 {
			batch = append(batch, tombstone(k, ver(50, 1)))
		} else {
			batch = append(batch, value(k, ver(50, 1), "v50"))
		}
	}
	if err := c.Apply(ctx, batch); err != nil {
		t.Fatalf("Apply across the masters: %v", err)
	}
	for i, k := range keys {
		if mustFill(t, ctx, c, value(k, ver(40, 1), "older")) {
			t.Errorf("Fill of an older version of %s stored", k)
		}
		got, ok := mustGet(t, ctx, c, k)
		if !ok || !sameEntry(got, batch[i]) {
			t.Errorf("Get(%s) = %+v (hit %v), want %+v", k, got, ok, batch[i])
		}
	}

	if err := cc.ForEachMaster(ctx, func(ctx context.Context, node *goredis.Client) error {
		return node.ScriptFlush(ctx).Err()
	}); err != nil {
		t.Fatalf("SCRIPT FLUSH on every master: %v", err)
	}
	if !mustFill(t, ctx, c, value(keys[1], ver(60, 1), "v60")) {
		t.Errorf("Fill of a newer version after SCRIPT FLUSH refused")
	}
	var newer []kv.Entry
	for _, k := range keys {
		newer = append(newer, value(k, ver(70, 1), "v70"))
	}
	if err := c.Apply(ctx, newer); err != nil {
		t.Fatalf("Apply after SCRIPT FLUSH on every master: %v", err)
	}
	for i, k := range keys {
		if got, ok := mustGet(t, ctx, c, k); !ok || !sameEntry(got, newer[i]) {
			t.Errorf("Get(%s) after the second Apply = %+v (hit %v), want %+v", k, got, ok, newer[i])
		}
	}
}

// Purge empties the prefix on every master, and only the prefix.
func TestClusterPurge(t *testing.T) {
	ctx := testContext(t)
	c, cc, cfg := newClusterCache(t)
	other, _, otherCfg := newClusterCache(t)
	keys := keysOnEveryMaster(t, ctx, cc, cfg.KeyPrefix, 3000)
	var batch []kv.Entry
	for _, k := range keys {
		batch = append(batch, value(k, ver(1, 1), "v"))
	}
	for _, x := range []*redis.Cache{c, other} {
		if err := x.Apply(ctx, batch); err != nil {
			t.Fatalf("Apply: %v", err)
		}
	}
	if err := c.Purge(ctx); err != nil {
		t.Fatalf("Purge: %v", err)
	}
	for addr, n := range countOnMasters(t, ctx, cc, cfg.KeyPrefix) {
		if n != 0 {
			t.Errorf("master %s holds %d keys under the purged prefix", addr, n)
		}
	}
	total := 0
	for _, n := range countOnMasters(t, ctx, cc, otherCfg.KeyPrefix) {
		total += n
	}
	if total != len(keys) {
		t.Errorf("another prefix holds %d keys after the purge, want %d", total, len(keys))
	}
}

// CheckMasters marks every shard once, then purges a shard only when its
// master is not the one that marked it (here: a mark naming another node,
// as a promoted replica has), and no other shard.
func TestClusterCheckMasters(t *testing.T) {
	ctx := testContext(t)
	c, cc, cfg := newClusterCache(t)
	keys := keysOnEveryMaster(t, ctx, cc, cfg.KeyPrefix, 30)
	var batch []kv.Entry
	for _, k := range keys {
		batch = append(batch, value(k, ver(1, 1), "v"))
	}
	if err := c.Apply(ctx, batch); err != nil {
		t.Fatalf("Apply: %v", err)
	}

	changes, err := c.CheckMasters(ctx)
	if err != nil || len(changes) != 3 {
		t.Fatalf("first CheckMasters = %+v, %v; want the 3 shards marked", changes, err)
	}
	if changes, err := c.CheckMasters(ctx); err != nil || len(changes) != 0 {
		t.Fatalf("CheckMasters again = %+v, %v; want no change", changes, err)
	}

	// The first key's shard: its mark names another node.
	victim, err := cc.MasterForKey(ctx, cfg.KeyPrefix+keys[0])
	if err != nil {
		t.Fatal(err)
	}
	markOtherMaster(t, ctx, victim, cfg.KeyPrefix)
	before := countOnMasters(t, ctx, cc, cfg.KeyPrefix)
	changes, err = c.CheckMasters(ctx)
	if err != nil || len(changes) != 1 || changes[0].Previous != "another-node-id" || changes[0].Addr != victim.Options().Addr {
		t.Fatalf("CheckMasters after the mark changed = %+v, %v; want the shard of %s", changes, err, victim.Options().Addr)
	}
	if got, want := changes[0].Purged, before[victim.Options().Addr]; got != want {
		t.Errorf("purged %d keys, the shard held %d", got, want)
	}
	after := countOnMasters(t, ctx, cc, cfg.KeyPrefix)
	for addr, n := range after {
		want := before[addr]
		if addr == victim.Options().Addr {
			want = 1 // the new mark
		}
		if n != want {
			t.Errorf("master %s holds %d keys after the check, want %d", addr, n, want)
		}
	}
}

// markOtherMaster overwrites the mark of the shard master is master of
// with another node's, "another-node-id", as a promoted replica finds it.
func markOtherMaster(t *testing.T, ctx context.Context, master *goredis.Client, prefix string) {
	t.Helper()
	iter := master.Scan(ctx, 0, prefix+redis.InternalMark+"master-mark:*", 100).Iterator()
	var marks []string
	for iter.Next(ctx) {
		marks = append(marks, iter.Val())
	}
	if len(marks) != 1 {
		t.Fatalf("marks on %s: %q (%v), want one", master.Options().Addr, marks, iter.Err())
	}
	if err := master.Set(ctx, marks[0], "another-node-id", 0).Err(); err != nil {
		t.Fatal(err)
	}
}

// keySlot agrees with the server's CLUSTER KEYSLOT, hash tags included: a
// shard's mark must fall in that shard's slots.
func TestClusterMarkInItsShard(t *testing.T) {
	ctx := testContext(t)
	c, cc, cfg := newClusterCache(t)
	if _, err := c.CheckMasters(ctx); err != nil {
		t.Fatal(err)
	}
	shards, err := cc.ClusterShards(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	marked := 0
	for _, s := range shards {
		for _, n := range s.Nodes {
			if n.Role != "master" || len(s.Slots) == 0 {
				continue
			}
			node := goredis.NewClient(&goredis.Options{Addr: fmt.Sprintf("%s:%d", n.IP, n.Port)})
			keys, err := node.Keys(ctx, cfg.KeyPrefix+redis.InternalMark+"master-mark:*").Result()
			node.Close()
			if err != nil || len(keys) != 1 {
				t.Fatalf("marks on master %s:%d = %q, %v; want one", n.IP, n.Port, keys, err)
			}
			marked++
		}
	}
	if marked != 3 {
		t.Errorf("%d masters marked, want 3", marked)
	}
	for _, key := range []string{"a", "kv:x", "{user1000}.following", "foo{}{bar}", "foo{{bar}}zap", "{}", "x{y"} {
		want, err := cc.ClusterKeySlot(ctx, key).Result()
		if err != nil {
			t.Fatal(err)
		}
		if got := redis.KeySlot(key); int64(got) != want {
			t.Errorf("KeySlot(%q) = %d, CLUSTER KEYSLOT says %d", key, got, want)
		}
	}
}

// Client keys named as the shard marks once were ("master-mark:N", which an
// older kvstack kept at <prefix>master-mark:N) are cached like any other
// key, on every shard, and a shard's purge after a failover goes through
// with them in it: the marks live in a namespace no client key can reach.
func TestClusterClientKeysNamedLikeMarks(t *testing.T) {
	ctx := testContext(t)
	c, cc, cfg := newClusterCache(t)
	if _, err := c.CheckMasters(ctx); err != nil {
		t.Fatalf("first CheckMasters: %v", err)
	}
	var keys []string
	for n := range 20 {
		keys = append(keys, fmt.Sprintf("master-mark:%d", n))
	}
	apply := func(v kv.Version, val string) []kv.Entry {
		t.Helper()
		var batch []kv.Entry
		for _, k := range keys {
			batch = append(batch, value(k, v, val))
		}
		if err := c.Apply(ctx, batch); err != nil {
			t.Fatalf("Apply of the keys master-mark:N: %v", err)
		}
		for i, k := range keys {
			if got, ok := mustGet(t, ctx, c, k); !ok || !sameEntry(got, batch[i]) {
				t.Errorf("Get(%s) = %+v (hit %v), want %+v", k, got, ok, batch[i])
			}
		}
		return batch
	}
	apply(ver(10, 1), "v10")

	// A failover: every shard's mark names another node.
	err := cc.ForEachMaster(ctx, func(ctx context.Context, node *goredis.Client) error {
		marks, err := node.Keys(ctx, cfg.KeyPrefix+redis.InternalMark+"master-mark:*").Result()
		if err != nil || len(marks) != 1 {
			return fmt.Errorf("marks on %s: %q, %v; want one", node.Options().Addr, marks, err)
		}
		return node.Set(ctx, marks[0], "another-node-id", 0).Err()
	})
	if err != nil {
		t.Fatal(err)
	}
	changes, err := c.CheckMasters(ctx)
	if err != nil || len(changes) != 3 {
		t.Fatalf("CheckMasters after the failover = %+v, %v; want the 3 shards purged", changes, err)
	}
	for _, k := range keys {
		if got, ok := mustGet(t, ctx, c, k); ok {
			t.Errorf("Get(%s) after the purge = %+v, want a miss", k, got)
		}
	}
	apply(ver(20, 1), "v20")
	if changes, err := c.CheckMasters(ctx); err != nil || len(changes) != 0 {
		t.Errorf("CheckMasters once the shards are marked anew = %+v, %v; want no change", changes, err)
	}
}

// What a hit costs on a cluster: the whole Get (one round trip, HMGET and
// INFO replication pipelined), the check of the key's master that Get
// makes before it (no round trip), and a plain HMGET on the master (what
// Get sent before it checked the master's term with it). Each reports the
// time the master spent on it (server-ns/op, from INFO commandstats),
// which the round trip, at the mercy of a shared machine's load, hides.
func BenchmarkClusterGetHit(b *testing.B) {
	ctx := b.Context()
	b.Setenv("REDIS_ADDR", privateCluster.Addr(b))
	client, cfg := redistest.MustClient(b)
	c := redis.NewCache(client, cfg, nil)
	if _, err := c.CheckMasters(ctx); err != nil {
		b.Fatal(err)
	}
	if err := c.Apply(ctx, []kv.Entry{value("k", ver(1, 1), "v")}); err != nil {
		b.Fatal(err)
	}
	master, err := client.(*goredis.ClusterClient).MasterForKey(ctx, cfg.KeyPrefix+"k")
	if err != nil {
		b.Fatal(err)
	}
	if _, ok := mustGet(b, ctx, c, "k"); !ok {
		b.Fatal("no hit")
	}
	// serverTime reports the master's time in cmds per op.
	serverTime := func(b *testing.B, run func(), cmds ...string) {
		if err := master.ConfigResetStat(ctx).Err(); err != nil {
			b.Fatal(err)
		}
		run()
		info, err := master.Info(ctx, "commandstats").Result()
		if err != nil {
			b.Fatal(err)
		}
		var total int64
		for _, cmd := range cmds {
			found := false
			for line := range strings.Lines(info) {
				if rest, ok := strings.CutPrefix(line, "cmdstat_"+cmd+":"); ok {
					var calls, usec int64
					if _, err := fmt.Sscanf(rest, "calls=%d,usec=%d", &calls, &usec); err != nil {
						b.Fatalf("commandstats %q: %v", line, err)
					}
					total, found = total+usec, true
				}
			}
			if !found {
				b.Fatalf("no %s in the master's commandstats", cmd)
			}
		}
		b.ReportMetric(float64(total)*1000/float64(b.N), "server-ns/op")
	}
	b.Run("get", func(b *testing.B) {
		serverTime(b, func() {
			for b.Loop() {
				if _, err := c.Get(ctx, "k"); err != nil {
					b.Fatal(err)
				}
			}
		}, "hmget", "info")
	})
	b.Run("master-check", func(b *testing.B) {
		for b.Loop() {
			if err := redis.VerifiedMaster(ctx, c, "k"); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("hmget", func(b *testing.B) {
		serverTime(b, func() {
			for b.Loop() {
				if err := master.HMGet(ctx, cfg.KeyPrefix+"k", "v", "d", "val").Err(); err != nil {
					b.Fatal(err)
				}
			}
		}, "hmget")
	})
}
