package redis_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/google/uuid"
	goredis "github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/kvstack/kvstack/internal/kv"
	"github.com/kvstack/kvstack/internal/redis"
	"github.com/kvstack/kvstack/internal/redis/redistest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	privateCluster.Close()
	privateRedis.Close()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// newCache returns a cache under a prefix of its own; adjust, when not nil,
// changes the config first.
func newCache(t *testing.T, adjust func(*redis.Config)) (*redis.Cache, goredis.UniversalClient, redis.Config) {
	t.Helper()
	client, cfg := redistest.MustClient(t)
	if adjust != nil {
		adjust(&cfg)
	}
	return redis.NewCache(client, cfg, nil), client, cfg
}

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// ver is a version at micros µs after the epoch with an op id ending in id.
func ver(micros int64, id byte) kv.Version {
	var op uuid.UUID
	op[15] = id
	return kv.Version{Time: time.UnixMicro(micros).UTC(), OpID: op}
}

func value(key string, v kv.Version, val string) kv.Entry {
	return kv.Entry{Key: key, Value: val, Version: v}
}

func tombstone(key string, v kv.Version) kv.Entry {
	return kv.Entry{Key: key, Version: v, Deleted: true}
}

func sameEntry(a, b kv.Entry) bool {
	return a.Key == b.Key && a.Value == b.Value && a.Deleted == b.Deleted && a.Version.Compare(b.Version) == 0
}

// mustGet returns the cached entry for key, or ok false on a miss. On a
// cluster, it reads again while the cache checks the key's master (the
// first read of each shard starts that check).
func mustGet(t testing.TB, ctx context.Context, c *redis.Cache, key string) (kv.Entry, bool) {
	t.Helper()
	e, err := c.Get(ctx, key)
	for deadline := time.Now().Add(5 * time.Second); (errors.Is(err, redis.ErrUnverified) || errors.Is(err, redis.ErrUncheckable)) && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
		e, err = c.Get(ctx, key)
	}
	switch {
	case err == nil:
		return e, true
	case errors.Is(err, kv.ErrCacheMiss):
		return kv.Entry{}, false
	}
	t.Fatalf("Get(%q): %v", key, err)
	return kv.Entry{}, false
}

func mustFill(t *testing.T, ctx context.Context, c *redis.Cache, e kv.Entry) bool {
	t.Helper()
	stored, err := c.Fill(ctx, e)
	if err != nil {
		t.Fatalf("Fill(%q, %s): %v", e.Key, e.Version, err)
	}
	return stored
}

type cacheGetter interface {
	Get(ctx context.Context, key string) (kv.Entry, error)
}

func microsUTC(micros int64) time.Time { return time.UnixMicro(micros).UTC() }
