package redis_test

import (
	"context"
	"errors"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/kvstack/kvstack/internal/kv"
)

// The hazard of asynchronous replication, reproduced: an update the master
// acknowledged has not reached its replica when the master dies; the
// replica, promoted, serves the older entry (PostgreSQL would hold the
// newer: stale until the TTL). CheckMasters sees the shard's new master
// and purges it, so the next read refills from PostgreSQL. Meanwhile the
// cache fails fast on the dead master's slots: a reader falls back, it
// does not wait.
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

	promotedAt := time.Now()
	got := getWhenServed(t, ctx, c, key)
	// Well before the old master is back (RestartDelay) and says MOVED.
	if d := time.Since(promotedAt); d > 2*time.Second {
		t.Errorf("the client found the promoted replica %s after it took over, want under 2 s", d.Round(100*time.Millisecond))
	}
	if !sameEntry(got, v1) {
		t.Fatalf("the promoted replica serves %+v, want v1: the hazard was not reproduced", got)
	}
	changes, err := c.CheckMasters(ctx)
	if err != nil || len(changes) != 1 || changes[0].Addr != replica.Addr() || changes[0].Previous == "" {
		t.Fatalf("CheckMasters after the failover = %+v, %v; want the promoted replica's shard", changes, err)
	}
	if e, ok := mustGet(t, ctx, c, key); ok {
		t.Errorf("after CheckMasters the cache still serves %+v: stale", e)
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
		if errors.Is(err, kv.ErrCacheMiss) {
			t.Errorf("Get during the failover: a miss, want a hit or an error")
		}
		if time.Now().After(deadline) {
			t.Fatalf("no failover within a minute")
		}
		time.Sleep(20 * time.Millisecond)
	}
	return slowest
}

// getWhenServed reads key until its shard answers again (the client
// follows the new master once it learns of it).
func getWhenServed(t *testing.T, ctx context.Context, c cacheGetter, key string) kv.Entry {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		e, err := c.Get(ctx, key)
		if err == nil {
			return e
		}
		if time.Now().After(deadline) {
			t.Fatalf("Get(%s) after the failover: %v", key, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
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
