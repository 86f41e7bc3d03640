package redis_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/kvstack/kvstack/internal/kv"
	"github.com/kvstack/kvstack/internal/redis"
)

// A Redis that hangs costs the read path one timeout, not one a read: the
// first Get that times out opens the circuit, and every Get and Fill after
// it fails at once with kv.ErrCacheDown, without asking Redis, until a Ping
// answers; then Get serves from Redis again. The consumer's Apply still
// asks Redis. The Redis is this package's private one: the pause reaches
// no one else's clients.
func TestHungRedisIsSkippedUntilItAnswers(t *testing.T) {
	ctx := testContext(t)
	c, _, cfg := privateCache(t, ctx, "circuit")
	e := value("k", ver(1, 1), "v")
	mustFill(t, ctx, c, e)

	control, err := redis.Open(ctx, cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer control.Close()
	const pause = 3 * time.Second
	if err := control.Do(ctx, "CLIENT", "PAUSE", pause.Milliseconds(), "ALL").Err(); err != nil {
		t.Fatalf("CLIENT PAUSE: %v", err)
	}
	paused := time.Now()

	if _, err := c.Get(ctx, "k"); !errors.Is(err, kv.ErrUnavailable) || errors.Is(err, kv.ErrCacheDown) {
		t.Fatalf("first Get of a paused Redis: error = %v, want its timeout", err)
	}
	for i := range 20 {
		began := time.Now()
		_, getErr := c.Get(ctx, "k")
		_, fillErr := c.Fill(ctx, value(fmt.Sprint("other-", i), ver(1, 1), "v"))
		took := time.Since(began)
		for _, err := range []error{getErr, fillErr} {
			if !errors.Is(err, kv.ErrCacheDown) || !errors.Is(err, kv.ErrUnavailable) {
				t.Fatalf("Get/Fill %d while Redis is known down: error = %v, want kv.ErrCacheDown", i, err)
			}
		}
		if took > 20*time.Millisecond {
			t.Fatalf("Get and Fill %d while Redis is known down took %s, want them skipped", i, took)
		}
	}
	if time.Since(paused) > pause {
		t.Fatalf("the checks outlasted the pause (%s): the test proves nothing", time.Since(paused))
	}
	// The consumer's path still asks Redis (and waits for it).
	if err := c.Apply(ctx, []kv.Entry{value("k", ver(2, 1), "newer")}); err == nil && time.Since(paused) < pause {
		t.Errorf("Apply during the pause succeeded before it ended")
	}

	// Redis answers again once the pause ends; a ping closes the circuit.
	for c.Ping(ctx) != nil {
		if time.Since(paused) > pause+10*time.Second {
			t.Fatalf("Redis still does not answer a ping %s after the pause", time.Since(paused))
		}
	}
	if got, ok := mustGet(t, ctx, c, "k"); !ok || got.Version.Compare(ver(1, 1)) < 0 {
		t.Errorf("Get after a ping answered = %+v, hit %v; want the cached entry", got, ok)
	}
}

// An open circuit lets one call a second try Redis: a cache that nobody
// pings (the consumer's, a tool's) goes back to Redis by itself, and while
// Redis hangs, one read a second waits for it, not every read.
func TestCircuitTriesRedisOnceASecond(t *testing.T) {
	ctx := testContext(t)
	c, client, _ := privateCache(t, ctx, "circuit-trial")
	e := value("k", ver(1, 1), "v")
	mustFill(t, ctx, c, e)

	const pause = 2500 * time.Millisecond
	if err := client.Do(ctx, "CLIENT", "PAUSE", pause.Milliseconds(), "ALL").Err(); err != nil {
		t.Fatalf("CLIENT PAUSE: %v", err)
	}
	paused := time.Now()
	slow := 0
	for time.Since(paused) < pause+3*time.Second {
		began := time.Now()
		got, err := c.Get(ctx, "k")
		if err == nil {
			if !sameEntry(got, e) {
				t.Fatalf("Get = %+v, want %+v", got, e)
			}
			if time.Since(paused) < pause {
				t.Fatalf("Get answered from Redis during its pause")
			}
			t.Logf("back to Redis %s after the pause began, %d reads waited for it", time.Since(paused).Round(time.Millisecond), slow)
			if slow > 4 {
				t.Errorf("%d reads waited for the paused Redis, want one the first time and one a second after", slow)
			}
			return
		}
		if !errors.Is(err, kv.ErrUnavailable) {
			t.Fatalf("Get during the pause: %v, want kv.ErrUnavailable", err)
		}
		if time.Since(began) > 100*time.Millisecond {
			slow++
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("Get never went back to Redis, unpinged, within 3 s of the pause's end")
}

// A miss, an entry this package did not write, or the caller giving up
// says nothing of Redis: none of them makes the next Get skip it.
func TestCircuitStaysClosedOnAnswers(t *testing.T) {
	ctx := testContext(t)
	c, client, cfg := newCache(t, nil)
	if _, err := c.Get(ctx, "absent"); !errors.Is(err, kv.ErrCacheMiss) {
		t.Fatalf("Get of an absent key: %v, want a miss", err)
	}
	if err := client.HSet(ctx, cfg.KeyPrefix+"foreign", "v", "garbage").Err(); err != nil {
		t.Fatalf("HSET: %v", err)
	}
	if _, err := c.Get(ctx, "foreign"); err == nil || errors.Is(err, kv.ErrCacheDown) {
		t.Fatalf("Get of a foreign hash: %v, want a non-miss error", err)
	}
	if err := client.Set(ctx, cfg.KeyPrefix+"string", "x", 0).Err(); err != nil {
		t.Fatalf("SET: %v", err)
	}
	if _, err := c.Get(ctx, "string"); !errors.Is(err, kv.ErrCacheMiss) {
		t.Fatalf("Get of a leftover string: %v, want a miss", err)
	}
	gone, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := c.Get(gone, "k"); err == nil {
		t.Fatalf("Get with a canceled context succeeded")
	}
	e := value("k", ver(1, 1), "v")
	mustFill(t, ctx, c, e)
	if got, ok := mustGet(t, ctx, c, "k"); !ok || !sameEntry(got, e) {
		t.Errorf("Get = %+v, hit %v; want %+v from Redis", got, ok, e)
	}
}

// A Redis that refuses (stopped) opens no circuit: a refusal costs a read
// a millisecond, and the next read asks Redis again, so that every replica
// finds it the moment it is back (chaos redis-stop-10s: replicas that
// skipped it for a second after its return served a key from two sources).
func TestRefusalOpensNoCircuit(t *testing.T) {
	cfg := redis.DefaultConfig()
	cfg.Addr = "127.0.0.1:1"
	client, err := redis.NewClient(cfg, nil)
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	defer client.Close()
	c := redis.NewCache(client, cfg, nil)
	ctx := testContext(t)
	for i := range 3 {
		_, err := c.Get(ctx, "k")
		if !errors.Is(err, kv.ErrUnavailable) || errors.Is(err, kv.ErrCacheDown) {
			t.Fatalf("Get %d of a refusing Redis: %v, want the refusal itself", i, err)
		}
		if err := c.Ping(ctx); err == nil {
			t.Fatalf("Ping of nothing succeeded")
		}
	}
}

// privateCache is a cache on this package's private Redis, under a key
// prefix of its own (name and the time), for the tests that pause that
// Redis: the pause reaches no one else's clients.
func privateCache(t *testing.T, ctx context.Context, name string) (*redis.Cache, goredis.UniversalClient, redis.Config) {
	t.Helper()
	cfg := redis.DefaultConfig()
	cfg.Addr = privateRedis.Addr(t)
	cfg.KeyPrefix = fmt.Sprintf("%s:%d:", name, time.Now().UnixNano())
	client, err := redis.Open(ctx, cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { client.Close() })
	return redis.NewCache(client, cfg, nil), client, cfg
}
