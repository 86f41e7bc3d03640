package redis_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/kvstack/kvstack/internal/kv"
	"github.com/kvstack/kvstack/internal/redis"
)

// Nothing listens on port 1: every call must fail fast, wrapping
// kv.ErrUnavailable with the dial error still in the chain.
func TestUnavailable(t *testing.T) {
	const prompt = 500 * time.Millisecond
	cfg := redis.DefaultConfig()
	cfg.Addr = "127.0.0.1:1"
	client, err := redis.NewClient(cfg, nil)
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	defer client.Close()
	ctx := context.Background() // no deadline: the client's own timeouts must bound each call

	e := value("k", ver(1, 1), "secret-value")
	// A cache of each call's own: a failed call opens the read path's
	// circuit, and the next Get or Fill would not reach the driver.
	tests := []struct {
		name string
		call func(c *redis.Cache) error
	}{
		{"Get", func(c *redis.Cache) error { _, err := c.Get(ctx, "k"); return err }},
		{"Fill", func(c *redis.Cache) error { _, err := c.Fill(ctx, e); return err }},
		{"Apply", func(c *redis.Cache) error { return c.Apply(ctx, []kv.Entry{e, e}) }},
		{"Ping", func(c *redis.Cache) error { return c.Ping(ctx) }},
		{"Purge", func(c *redis.Cache) error { return c.Purge(ctx) }},
		{"Open", func(*redis.Cache) error {
			client, err := redis.Open(ctx, cfg)
			if err == nil {
				client.Close()
			}
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			err := tt.call(redis.NewCache(client, cfg, nil))
			elapsed := time.Since(start)
			if !errors.Is(err, kv.ErrUnavailable) {
				t.Fatalf("%s error = %v, want one wrapping kv.ErrUnavailable", tt.name, err)
			}
			if errors.Is(err, kv.ErrCacheMiss) {
				t.Errorf("%s error = %v, must not be a cache miss", tt.name, err)
			}
			var opErr *net.OpError
			if !errors.As(err, &opErr) {
				t.Errorf("%s error = %v, want the driver's *net.OpError in the chain", tt.name, err)
			}
			if msg := err.Error(); !strings.Contains(msg, "redis") || strings.Contains(msg, "secret-value") {
				t.Errorf("%s error = %q, want it to name redis and not carry the value", tt.name, msg)
			}
			if elapsed > prompt {
				t.Errorf("%s took %v, want under %v", tt.name, elapsed, prompt)
			}
		})
	}
}

// A hash this package did not write is not served as an entry. (A key of
// another type is a leftover of an older kvstack, replaced: see
// TestLeftoverMarkUnderAClientKey.)
func TestForeignHashIsNotServed(t *testing.T) {
	ctx := testContext(t)
	c, client, cfg := newCache(t, nil)
	if err := client.HSet(ctx, cfg.KeyPrefix+"foreign", "v", "garbage").Err(); err != nil {
		t.Fatalf("HSET: %v", err)
	}
	if _, err := c.Get(ctx, "foreign"); err == nil || errors.Is(err, kv.ErrCacheMiss) {
		t.Errorf("Get on a foreign hash: error = %v, want a non-miss error", err)
	}
}
