// Package redistest gives tests a Redis client and a key prefix of their own
// on the real server named by REDIS_ADDR (127.0.0.1:6379 by default), in a
// database of their own (REDIS_TEST_DB, 15 by default): a developer's own
// keys in database 0 are never scanned nor touched, and the cleanup's SCAN
// does not walk them. When REDIS_ADDR names a Redis Cluster (a private
// one: enginetest.RedisCluster), the client is the cluster's, in its only
// database.
package redistest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/caarlos0/env/v11"
	goredis "github.com/redis/go-redis/v9"

	"github.com/kvstack/kvstack/internal/redis"
)

// testDB is the database the tests use: REDIS_TEST_DB, else 15.
func testDB() int {
	if n, err := strconv.Atoi(os.Getenv("REDIS_TEST_DB")); err == nil {
		return n
	}
	return 15
}

// MustClient returns a client for the configured Redis and a Config whose
// key prefix (test:<random>:) belongs to this test alone. Every key under
// that prefix is removed and the client closed when the test ends. When
// Redis does not answer, the test fails naming it: it is never skipped.
func MustClient(tb testing.TB) (goredis.UniversalClient, redis.Config) {
	tb.Helper()
	if testing.Short() {
		tb.Skip("needs Redis; not run with -short (make test runs it)")
	}
	cfg, err := env.ParseAs[redis.Config]()
	if err != nil {
		tb.Fatalf("redis config from the environment: %v", err)
	}
	cfg.KeyPrefix = "test:" + randomHex(tb) + ":"
	if !cfg.IsCluster() { // a cluster has only database 0
		cfg.DB = testDB()
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	client, err := redis.Open(ctx, cfg)
	if err != nil {
		tb.Fatalf("Redis at %s is unreachable (set REDIS_ADDR, or start redis-server): %v", cfg.Addr, err)
	}
	tb.Cleanup(func() {
		defer client.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := redis.NewCache(client, cfg, nil).Purge(ctx); err != nil {
			tb.Errorf("clean keys under %q in Redis at %s: %v", cfg.KeyPrefix, cfg.Addr, err)
		}
	})
	return client, cfg
}

func randomHex(tb testing.TB) string {
	tb.Helper()
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		tb.Fatalf("random key prefix: %v", err)
	}
	return hex.EncodeToString(b)
}
