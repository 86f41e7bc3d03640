package redis_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/kvstack/kvstack/internal/kv"
	"github.com/kvstack/kvstack/internal/redis"
)

func TestPurge(t *testing.T) {
	ctx := testContext(t)
	_, client, base := newCache(t, nil)
	_, otherClient, otherCfg := newCache(t, nil) // another test's prefix

	// Prefixes with glob characters: unescaped, "<base>a*" + "*" would match
	// the keys of "<base>ab:" too.
	cfgOf := func(prefix string) redis.Config { cfg := base; cfg.KeyPrefix = base.KeyPrefix + prefix; return cfg }
	purged := redis.NewCache(client, cfgOf("a*"), nil)
	sibling := redis.NewCache(client, cfgOf("ab:"), nil)
	bracket := redis.NewCache(client, cfgOf("[a]"), nil)
	other := redis.NewCache(otherClient, otherCfg, nil)

	// More keys than one SCAN page, to cross batches.
	const n = 2500
	batch := make([]kv.Entry, n)
	for i := range batch {
		batch[i] = value(fmt.Sprintf("k%d", i), ver(1, 1), "v")
	}
	for _, c := range []*redis.Cache{purged, sibling, bracket, other} {
		if err := c.Apply(ctx, batch); err != nil {
			t.Fatalf("Apply: %v", err)
		}
	}
	// A key that is the prefix with nothing after it, and one outside any
	// cache that merely starts like the purged prefix's pattern would.
	if err := client.Set(ctx, base.KeyPrefix+"a", "not the cache's", 0).Err(); err != nil {
		t.Fatalf("SET: %v", err)
	}

	if err := purged.Purge(ctx); err != nil {
		t.Fatalf("Purge: %v", err)
	}

	tests := []struct {
		name     string
		pattern  string
		wantKeys int
	}{
		{"purged prefix", base.KeyPrefix + `a\**`, 0},
		{"sibling prefix", base.KeyPrefix + "ab:*", n},
		{"prefix with brackets", base.KeyPrefix + `\[a\]*`, n},
		{"another test's prefix", otherCfg.KeyPrefix + "*", n},
		{"key outside the caches", base.KeyPrefix + "a", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cl := client
			if tt.name == "another test's prefix" {
				cl = otherClient
			}
			var got int
			iter := cl.Scan(ctx, 0, tt.pattern, 1000).Iterator()
			for iter.Next(ctx) {
				if !strings.Contains(iter.Val(), "\x00") { // not the client's own mark (checkServer)
					got++
				}
			}
			if err := iter.Err(); err != nil {
				t.Fatalf("SCAN %q: %v", tt.pattern, err)
			}
			if got != tt.wantKeys {
				t.Errorf("keys matching %q after Purge = %d, want %d", tt.pattern, got, tt.wantKeys)
			}
		})
	}
	if _, ok := mustGet(t, ctx, purged, "k0"); ok {
		t.Errorf("Get after Purge: hit, want miss")
	}
}
