package redis_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/kvstack/kvstack/internal/engine"
	"github.com/kvstack/kvstack/internal/kv"
	"github.com/kvstack/kvstack/internal/redis"
)

// The hazard of asynchronous replication, reproduced: an update the master
// acknowledged has not reached its replica when the master dies; the
// replica, promoted, holds the older entry (PostgreSQL would hold the
// newer). The cache checks the promoted master's mark before it serves
// its shard, and purges it, so the next read refills from PostgreSQL.
// Meanwhile the cache fails fast on the dead master's slots: a reader
// falls back, it does not wait.
func TestDisruptiveClusterFailoverLeavesNoStaleEntry(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	c, _, cfg := newClusterCache(t)
	const key = "k"
	v1, v2 := value(key, ver(1, 1), "v1"), value(key, ver(2, 1), "v2")
	if _, err := c.CheckMasters(ctx); err != nil { // the shards marked
		t.Fatal(err)
	}
	if err := c.Apply(ctx, []kv.Entry{v1}); err != nil {
		t.Fatal(err)
	}
	master := privateCluster.MasterOf(t, cfg.KeyPrefix+key)
	mc := goredis.NewClient(&goredis.Options{Addr: master.Addr()})
	defer mc.Close()
	if n, err := mc.Wait(ctx, 1, 5*time.Second).Result(); err != nil || n != 1 {
		t.Fatalf("WAIT for v1 on the replica = %d, %v", n, err)
	}

	replica := privateCluster.CutReplica(t, master)
	if err := c.Apply(ctx, []kv.Entry{v2}); err != nil {
		t.Fatalf("Apply v2 on the master: %v", err)
	}
	if n, err := mc.Wait(ctx, 1, 200*time.Millisecond).Result(); err != nil || n != 0 {
		t.Fatalf("WAIT after v2 = %d, %v; want 0: the replica must not have it", n, err)
	}
	privateCluster.Kill(t, master)
	killed := time.Now()

	slowest := readsDuringFailover(t, ctx, c, key, func() bool {
		n, err := privateCluster.Cluster(t).MasterOf(ctx, cfg.KeyPrefix+key)
		return err == nil && n.Name != master.Name
	})
	promoted := privateCluster.MasterOf(t, cfg.KeyPrefix+key)
	t.Logf("%s promoted %s after the kill; slowest cache read meanwhile %s", promoted.Name,
		time.Since(killed).Round(100*time.Millisecond), slowest.Round(time.Millisecond))
	if promoted.Name != replica.Name {
		t.Fatalf("the new master is %s, want the replica %s", promoted.Name, replica.Name)
	}
	if slowest > time.Second {
		t.Errorf("a cache read took %s during the failover: the reader must fall back, not wait", slowest)
	}

	// The promoted replica holds v1 (the hazard), but the cache serves it
	// to no reader: it checks the promoted master's mark first.
	if d := missWhenServed(t, ctx, c, key, v1); d > 2*time.Second {
		t.Errorf("the cache served the promoted replica's shard %s after it took over, want under 2 s", d.Round(100*time.Millisecond))
	}
	changes, err := c.CheckMasters(ctx)
	if err != nil || len(changes) != 0 {
		t.Fatalf("CheckMasters after the reads = %+v, %v; want no change: the read path's check purged and marked the shard", changes, err)
	}
}

// The defect of chaos-ha's redis-master-kill9: between a replica's
// promotion and the consumer's next CheckMasters, a read was served the
// entries the dead master had acknowledged but not replicated: an entry
// older than one a read had already returned. A read must not be served
// from a shard's master before that master is known to hold its mark.
func TestDisruptiveClusterPromotedReplicaServesNoOlderEntry(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	c, _, cfg := newClusterCache(t)
	const key = "k"
	v1, v2 := value(key, ver(1, 1), "v1"), value(key, ver(2, 1), "v2")
	if _, err := c.CheckMasters(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Apply(ctx, []kv.Entry{v1}); err != nil {
		t.Fatal(err)
	}
	master := privateCluster.MasterOf(t, cfg.KeyPrefix+key)
	mc := goredis.NewClient(&goredis.Options{Addr: master.Addr()})
	defer mc.Close()
	if n, err := mc.Wait(ctx, 1, 5*time.Second).Result(); err != nil || n != 1 {
		t.Fatalf("WAIT for v1 on the replica = %d, %v", n, err)
	}
	privateCluster.CutReplica(t, master)
	if err := c.Apply(ctx, []kv.Entry{v2}); err != nil {
		t.Fatalf("Apply v2 on the master: %v", err)
	}
	if e, ok := mustGet(t, ctx, c, key); !ok || !sameEntry(e, v2) {
		t.Fatalf("Get before the kill = %+v, %v; want v2", e, ok)
	}
	privateCluster.Kill(t, master)
	promoted := privateCluster.WaitNewMaster(t, cfg.KeyPrefix+key, master)

	pc := goredis.NewClient(&goredis.Options{Addr: promoted.Addr()})
	defer pc.Close()
	if v, err := pc.HGet(ctx, cfg.KeyPrefix+key, "v").Result(); err != nil || v != v1.Version.String() {
		t.Fatalf("the promoted replica holds version %q, %v; want v1's: the hazard was not reproduced", v, err)
	}
	d := missWhenServed(t, ctx, c, key, v1)
	t.Logf("the promoted replica's shard served again (purged) %s after the promotion was seen", d.Round(10*time.Millisecond))
}

// missWhenServed reads key until the cache answers for its shard again,
// which must be a miss (the shard purged), and never the stale entry; it
// returns how long that took.
func missWhenServed(t *testing.T, ctx context.Context, c cacheGetter, key string, stale kv.Entry) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := start.Add(30 * time.Second)
	for {
		e, err := c.Get(ctx, key)
		switch {
		case err == nil && sameEntry(e, stale):
			t.Fatalf("Get after the failover served %+v: older than what the dead master acknowledged", e)
		case err == nil:
			t.Fatalf("Get after the failover = %+v, want a miss", e)
		case errors.Is(err, redis.ErrUnverified):
			// Not served: the shard's check runs.
		case errors.Is(err, kv.ErrCacheMiss):
			return time.Since(start)
		}
		if time.Now().After(deadline) {
			t.Fatalf("Get(%s) after the failover: %v", key, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// readsDuringFailover reads key until done reports true, and returns the
// slowest read: each either answers or fails (the caller then reads
// PostgreSQL), never a miss for a key that exists.
func readsDuringFailover(t *testing.T, ctx context.Context, c cacheGetter, key string, done func() bool) time.Duration {
	t.Helper()
	var slowest time.Duration
	deadline := time.Now().Add(time.Minute)
	for !done() {
		start := time.Now()
		_, err := c.Get(ctx, key)
		if d := time.Since(start); d > slowest {
			slowest = d
		}
		if errors.Is(err, kv.ErrCacheMiss) && !errors.Is(err, redis.ErrUnverified) {
			t.Errorf("Get during the failover: a miss, want a hit, an error, or the check's wait run out")
		}
		if time.Now().After(deadline) {
			t.Fatalf("no failover within a minute")
		}
		time.Sleep(20 * time.Millisecond)
	}
	return slowest
}

// A master that hangs (frozen: its connections open, no answer) costs a
// read on its slots the read timeout per try, as on a single server, not
// more: the cluster client tries no more nodes than REDIS_MAX_RETRIES.
func TestDisruptiveClusterFrozenMasterFailsFast(t *testing.T) {
	ctx := testContext(t)
	c, _, cfg := newClusterCache(t)
	mustFill(t, ctx, c, value("k", ver(1, 1), "v"))
	master := privateCluster.MasterOf(t, cfg.KeyPrefix+"k")
	thaw := privateCluster.Freeze(t, master)
	defer thaw()
	bound := time.Duration(cfg.MaxRetries+1)*cfg.ReadTimeout + 200*time.Millisecond
	var slowest time.Duration
	for range 3 {
		start := time.Now()
		_, err := c.Get(ctx, "k")
		d := time.Since(start)
		if !errors.Is(err, kv.ErrUnavailable) || d > bound {
			t.Errorf("Get on a frozen master's slot = %v after %s, want unavailable within %s", err, d.Round(time.Millisecond), bound)
		}
		slowest = max(slowest, d)
	}
	t.Logf("reads of a frozen master's slot fail in %s at most (REDIS_READ_TIMEOUT %s, REDIS_MAX_RETRIES %d)",
		slowest.Round(time.Millisecond), cfg.ReadTimeout, cfg.MaxRetries)
}

// A failover back that no read saw: the key's master A replaced by its
// replica B (CLUSTER FAILOVER TAKEOVER), B given an update that A, cut off
// as B's replica, misses, then A master again (TAKEOVER once more). The
// API read A's shard before and nothing of it in between: its record of A
// and its map of the cluster are as they were, its connections to A never
// closed. A, master again, holds the entry B's update replaced; the API
// must not serve it. Whether or not the consumer checked B in between
// (marking it, a mark that A may or may not have received), A's mark is
// not its own in its new term.
func TestDisruptiveClusterTakeoverBackServesNoOlderEntry(t *testing.T) {
	for _, consumerChecks := range []bool{true, false} {
		t.Run(fmt.Sprintf("consumer checks between: %v", consumerChecks), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
			defer cancel()
			api, _, cfg := newClusterCache(t)
			cclient, err := redis.NewClient(cfg, nil) // the consumer's, apart
			if err != nil {
				t.Fatal(err)
			}
			defer cclient.Close()
			consumer := redis.NewCache(cclient, cfg, nil)
			const key = "k"
			v1, v2, v3 := value(key, ver(1, 1), "v1"), value(key, ver(2, 1), "v2"), value(key, ver(3, 1), "v3")
			if _, err := consumer.CheckMasters(ctx); err != nil {
				t.Fatal(err)
			}
			mustApply(t, ctx, consumer, v1)
			if e, ok := mustGet(t, ctx, api, key); !ok || !sameEntry(e, v1) {
				t.Fatalf("Get before the failovers = %+v, %v; want v1", e, ok)
			}

			a := privateCluster.MasterOf(t, cfg.KeyPrefix+key)
			b, err := privateCluster.Cluster(t).ReplicaOf(ctx, a)
			if err != nil {
				t.Fatal(err)
			}
			waitReplicated(t, ctx, a)
			takeover(t, ctx, b)
			if m := privateCluster.WaitNewMaster(t, cfg.KeyPrefix+key, a); m.Name != b.Name {
				t.Fatalf("the master after %s's takeover is %s", b.Name, m.Name)
			}
			if consumerChecks {
				if _, err := consumer.CheckMasters(ctx); err != nil {
					t.Fatal(err)
				}
			}
			mustApply(t, ctx, consumer, v2)
			waitReplicated(t, ctx, b) // A, B's replica now, holds v2
			if r, err := privateCluster.Cluster(t).ReplicaOf(ctx, b); err != nil || r.Name != a.Name {
				t.Fatalf("the replica of %s is %v, %v; want %s", b.Name, r, err, a.Name)
			}
			privateCluster.CutReplica(t, b)
			mustApply(t, ctx, consumer, v3)
			takeover(t, ctx, a)
			if m := privateCluster.WaitNewMaster(t, cfg.KeyPrefix+key, b); m.Name != a.Name {
				t.Fatalf("the master after %s's takeover is %s", a.Name, m.Name)
			}
			ac := goredis.NewClient(&goredis.Options{Addr: a.Addr()})
			defer ac.Close()
			if v, err := ac.HGet(ctx, cfg.KeyPrefix+key, "v").Result(); err != nil || v != v2.Version.String() {
				t.Fatalf("%s, master again, holds version %q, %v; want v2's: the hazard was not reproduced", a.Name, v, err)
			}
			d := missWhenServed(t, ctx, api, key, v2)
			t.Logf("%s's shard served again (purged) %s after it was master again", a.Name, d.Round(10*time.Millisecond))
		})
	}
}

// takeover promotes node, a replica, at once (CLUSTER FAILOVER TAKEOVER:
// no agreement asked, no sync with its master awaited). The cluster is
// waited for until it is whole again at the test's end.
func takeover(t *testing.T, ctx context.Context, node *engine.Redis) {
	t.Helper()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := privateCluster.Cluster(t).WaitHealthy(ctx); err != nil {
			t.Errorf("private Redis Cluster after the takeover by %s: %v", node.Name, err)
		}
	})
	nc := goredis.NewClient(&goredis.Options{Addr: node.Addr()})
	defer nc.Close()
	if err := nc.Do(ctx, "CLUSTER", "FAILOVER", "TAKEOVER").Err(); err != nil {
		t.Fatalf("CLUSTER FAILOVER TAKEOVER on %s: %v", node.Name, err)
	}
}

// waitReplicated waits until master's replica has acknowledged all that
// master holds.
func waitReplicated(t *testing.T, ctx context.Context, master *engine.Redis) {
	t.Helper()
	mc := goredis.NewClient(&goredis.Options{Addr: master.Addr()})
	defer mc.Close()
	for deadline := time.Now().Add(time.Minute); ; {
		if n, err := mc.Wait(ctx, 1, time.Second).Result(); err == nil && n == 1 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the replica of %s not in sync within a minute", master.Name)
		}
	}
}

// mustApply applies es as the consumer does, again while the cluster
// client follows a failover (a MOVED, a node that refuses writes).
func mustApply(t *testing.T, ctx context.Context, c *redis.Cache, es ...kv.Entry) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; {
		err := c.Apply(ctx, es)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("Apply of %d entries: %v", len(es), err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A check slower than a read's wait: the shard holds so many keys that
// its purge (no mark yet) outlasts the read's wait. The read is then a
// miss, so that its reader, who reads PostgreSQL, fills the cache before
// it answers: once the check is done the key holds that fill (or nothing,
// the purge having come after it), never the entry the fill replaced.
// Without the fill, the next reader could be served the older entry from
// the cache after a reader had answered the newer from PostgreSQL.
func TestDisruptiveClusterSlowCheckReadIsAMissItsReaderFills(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	consumer, _, cfg := newClusterCache(t)
	// The API's, apart, with a read's wait of 500 ms (REDIS_READ_TIMEOUT
	// 250 ms, tried twice) that the purge outlasts on any machine.
	cfg.ReadTimeout = 250 * time.Millisecond
	aclient, err := redis.NewClient(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer aclient.Close()
	api := redis.NewCache(aclient, cfg, nil)
	const n = 200_000 // keys of one slot: one shard to purge
	const key = "{slow}0"
	old, newer := value(key, ver(1, 1), "old"), value(key, ver(2, 1), "new")
	batch := make([]kv.Entry, 0, 5000)
	for i := range n {
		batch = append(batch, value(fmt.Sprintf("{slow}%d", i), ver(1, 1), "old"))
		if len(batch) == cap(batch) || i == n-1 {
			mustApply(t, ctx, consumer, batch...)
			batch = batch[:0]
		}
	}

	start := time.Now()
	_, err = api.Get(ctx, key)
	waited := time.Since(start)
	if !errors.Is(err, redis.ErrUnverified) {
		t.Fatalf("Get while the shard's check purges %d keys = %v after %s; want the wait run out (the check too fast to test)", n, err, waited.Round(time.Millisecond))
	}
	if !errors.Is(err, kv.ErrCacheMiss) {
		t.Fatalf("Get whose check outlasted its wait = %v; want a miss, which its reader fills", err)
	}
	mustFill(t, ctx, api, newer) // the reader's, with what it read from PostgreSQL
	for {
		e, err := api.Get(ctx, key)
		switch {
		case errors.Is(err, redis.ErrUnverified), errors.Is(err, kv.ErrUnavailable):
			// The check runs still (or a read timed out on a loaded machine).
			if ctx.Err() != nil {
				t.Fatalf("Get after the check: %v", err)
			}
			time.Sleep(10 * time.Millisecond)
			continue
		case err == nil && !sameEntry(e, newer):
			t.Fatalf("Get after the check = %+v; want the reader's fill %+v, or a miss (never %q)", e, newer, old.Value)
		case err != nil && !errors.Is(err, kv.ErrCacheMiss):
			t.Fatalf("Get after the check: %v", err)
		}
		t.Logf("the check (a purge of %d keys) took %s; the read waited %s, then was a miss; after the check the key is %s",
			n, time.Since(start).Round(10*time.Millisecond), waited.Round(time.Millisecond), map[bool]string{true: "the fill", false: "purged"}[err == nil])
		return
	}
}
