package redis_test

import (
	"sync"
	"testing"

	"github.com/kvstack/kvstack/internal/kv"
	"github.com/kvstack/kvstack/internal/redis"
)

// reports collects what a cache tells its PurgeReport.
type reports struct {
	mu  sync.Mutex
	got []redis.MasterChange
}

func (r *reports) report(ch redis.MasterChange) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, ch)
}

func (r *reports) all() []redis.MasterChange {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]redis.MasterChange(nil), r.got...)
}

// A read that finds a shard's master unverified checks it itself, and may
// purge it before the consumer's CheckMasters does: then the purge is the
// reader's, and the consumer's next check finds the mark current. The
// reader's purge is reported all the same (an API replica's purges went
// unlogged and uncounted, and a CI run of TestDisruptiveRedisMasterKill
// looked for the consumer's in vain).
func TestClusterReadReportsItsPurge(t *testing.T) {
	ctx := testContext(t)
	checker, cc, cfg := newClusterCache(t)
	keys := keysOnEveryMaster(t, ctx, cc, cfg.KeyPrefix, 30)
	if err := checker.Apply(ctx, []kv.Entry{value(keys[0], ver(1, 1), "v")}); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if _, err := checker.CheckMasters(ctx); err != nil {
		t.Fatal(err)
	}
	victim, err := cc.MasterForKey(ctx, cfg.KeyPrefix+keys[0])
	if err != nil {
		t.Fatal(err)
	}
	markOtherMaster(t, ctx, victim, cfg.KeyPrefix)

	var r reports
	reader := redis.NewCache(cc, cfg, r.report)
	if e, ok := mustGet(t, ctx, reader, keys[0]); ok {
		t.Errorf("Get of a shard whose mark is another master's = %+v, a hit; want it purged", e)
	}
	got := r.all()
	if len(got) != 1 || got[0].Previous != "another-node-id" || got[0].Addr != victim.Options().Addr || got[0].Purged == 0 {
		t.Fatalf("purges reported by the reader = %+v; want the shard of %s, with its key", got, victim.Options().Addr)
	}
	if changes, err := checker.CheckMasters(ctx); err != nil || len(changes) != 0 {
		t.Errorf("CheckMasters after the reader's purge = %+v, %v; want nothing left to purge", changes, err)
	}
}

// A new connection to a single server whose mark is another run's purges
// the prefix's keys before it serves a command, and reports it.
func TestServerConnectionReportsItsPurge(t *testing.T) {
	ctx := testContext(t)
	c, client, cfg := newCache(t, nil)
	if err := c.Apply(ctx, []kv.Entry{value("k", ver(1, 1), "v")}); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	mark := cfg.KeyPrefix + redis.InternalMark + "server-mark"
	if err := client.Set(ctx, mark, "another-run-id", 0).Err(); err != nil {
		t.Fatal(err)
	}
	var r reports
	fresh, err := redis.NewClient(cfg, r.report)
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	if e, ok := mustGet(t, ctx, redis.NewCache(fresh, cfg, r.report), "k"); ok {
		t.Errorf("Get through a new connection = %+v, a hit; want the entry purged", e)
	}
	got := r.all()
	// Purged counts every key under the prefix: the entry and the old mark.
	if len(got) != 1 || got[0].Slots != "all" || got[0].Previous != "another-run-id" || got[0].Purged != 2 || got[0].Addr != cfg.Addrs()[0] {
		t.Fatalf("purges reported = %+v; want one of the server's prefix, 2 keys, at %s", got, cfg.Addrs()[0])
	}
}
