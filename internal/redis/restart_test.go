package redis_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/kvstack/kvstack/internal/engine/enginetest"
	"github.com/kvstack/kvstack/internal/kv"
	"github.com/kvstack/kvstack/internal/redis"
)

// privateRedis is a single redis-server of this package's own, to stop
// and start again with its dump (the shared one is never stopped); it
// serves TLS too, for TestTLS.
var privateRedis = enginetest.Redis{TLS: true}

// A single Redis stopped (it saves its dump) and started again reloads
// entries that may be older than PostgreSQL: while it was down, reads went
// to PostgreSQL and saw newer writes, so serving the dump's entry would
// make a later read go back in time (chaos fault redis-stop-10s). None of
// them may be served; the keys of other prefixes are left alone.
func TestRestartedServerServesNoEntryOfItsDump(t *testing.T) {
	ctx := testContext(t)
	cfg := redis.DefaultConfig()
	cfg.Addr = privateRedis.Addr(t)
	cfg.KeyPrefix = fmt.Sprintf("restart:%d:", time.Now().UnixNano()) // a run of its own (-count)
	client, err := redis.Open(ctx, cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer client.Close()
	c := redis.NewCache(client, cfg, nil)

	old := value("k", ver(1, 1), "old")
	if err := c.Apply(ctx, []kv.Entry{old}); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if err := client.Set(ctx, cfg.KeyPrefix[:len(cfg.KeyPrefix)-1]+"-other:k", "another prefix's", 0).Err(); err != nil {
		t.Fatalf("SET: %v", err)
	}
	// A new client on the same server, not restarted: its connections
	// find the server's mark and purge nothing.
	again, err := redis.Open(ctx, cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if e, ok := mustGet(t, ctx, redis.NewCache(again, cfg, nil), "k"); !ok || !sameEntry(e, old) {
		t.Errorf("Get by a new client of the same run = %+v, hit %v; want the entry %+v", e, ok, old)
	}
	again.Close()

	privateRedis.Stop(t)() // saves its dump, and loads it as it starts

	// The pool's connections died with the server: a call may fail before
	// one is dialled again.
	var e kv.Entry
	deadline := time.Now().Add(10 * time.Second)
	for {
		e, err = c.Get(ctx, "k")
		if !errors.Is(err, kv.ErrUnavailable) || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	switch {
	case err == nil:
		t.Errorf("Get after the restart = %+v, the dump's entry; want a miss", e)
	case !errors.Is(err, kv.ErrCacheMiss):
		t.Fatalf("Get after the restart: %v", err)
	}
	if got, err := client.Get(ctx, cfg.KeyPrefix[:len(cfg.KeyPrefix)-1]+"-other:k").Result(); err != nil || got != "another prefix's" {
		t.Errorf("another prefix's key after the restart = %q, %v; want it reloaded from the dump and kept", got, err)
	}

	// The cache works again: a fill is stored and served.
	newer := value("k", ver(2, 2), "newer")
	mustFill(t, ctx, c, newer)
	if e, ok := mustGet(t, ctx, c, "k"); !ok || !sameEntry(e, newer) {
		t.Errorf("Get after a fill = %+v, hit %v; want %+v", e, ok, newer)
	}
}

// The consumer's periodic check of a single server finds nothing to purge
// while the server runs on (its connections checked the mark as they were
// dialled).
func TestCheckMastersOfARunningServer(t *testing.T) {
	ctx := testContext(t)
	c, _, _ := newCache(t, nil)
	if err := c.Apply(ctx, []kv.Entry{value("k", ver(1, 1), "v")}); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	for range 2 {
		changes, err := c.CheckMasters(ctx)
		if err != nil || len(changes) != 0 {
			t.Fatalf("CheckMasters = %+v, %v; want no change", changes, err)
		}
	}
	if _, ok := mustGet(t, ctx, c, "k"); !ok {
		t.Errorf("Get after CheckMasters: miss, want the entry")
	}
}
