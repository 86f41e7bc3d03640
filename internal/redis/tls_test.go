package redis_test

import (
	"fmt"
	"maps"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/caarlos0/env/v11"
	goredis "github.com/redis/go-redis/v9"

	"github.com/kvstack/kvstack/internal/engine"
	"github.com/kvstack/kvstack/internal/engine/enginetest"
	"github.com/kvstack/kvstack/internal/kv"
	"github.com/kvstack/kvstack/internal/redis"
)

// The client speaks TLS to a server whose certificate chains to
// REDIS_TLS_CA_FILE and carries the name dialled (or
// REDIS_TLS_SERVER_NAME), and to no other: a cache entry written and read
// back over TLS, and the same server refused under another authority or
// another name. privateRedis serves TLS on a port of its own with a
// certificate for localhost only.
func TestTLS(t *testing.T) {
	files := privateRedis.TLSFiles(t)
	_, port, err := net.SplitHostPort(privateRedis.TLSAddr(t))
	if err != nil {
		t.Fatal(err)
	}
	other, err := engine.MakeTLS(t.TempDir(), enginetest.TLSHost) // the same name, another authority
	if err != nil {
		t.Fatal(err)
	}
	byName := "rediss://" + net.JoinHostPort(enginetest.TLSHost, port)
	byIP := "rediss://" + net.JoinHostPort("127.0.0.1", port)

	for _, tc := range []struct {
		name    string
		env     map[string]string
		refused string // the error's words; empty: connects
	}{
		{"the right CA and name", map[string]string{"REDIS_ADDR": byName, "REDIS_TLS_CA_FILE": files.CA}, ""},
		{"the name set apart from the address", map[string]string{"REDIS_ADDR": byIP, "REDIS_TLS_CA_FILE": files.CA, "REDIS_TLS_SERVER_NAME": enginetest.TLSHost}, ""},
		{"another CA", map[string]string{"REDIS_ADDR": byName, "REDIS_TLS_CA_FILE": other.CA}, "certificate signed by unknown authority"},
		{"the system's CAs", map[string]string{"REDIS_ADDR": byName}, "certificate signed by unknown authority"},
		{"an address not in the certificate", map[string]string{"REDIS_ADDR": byIP, "REDIS_TLS_CA_FILE": files.CA}, "doesn't contain any IP SANs"},
		{"a server name not in the certificate", map[string]string{"REDIS_ADDR": byName, "REDIS_TLS_CA_FILE": files.CA, "REDIS_TLS_SERVER_NAME": "cache.example"}, "not cache.example"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testContext(t)
			vars := map[string]string{
				// Loading the system's CAs, the first time, can take longer
				// than the default 1s on a busy machine.
				"REDIS_DIAL_TIMEOUT": "10s",
			}
			maps.Copy(vars, tc.env)
			cfg, err := env.ParseAsWithOptions[redis.Config](env.Options{Environment: vars})
			if err != nil {
				t.Fatal(err)
			}
			cfg.KeyPrefix = fmt.Sprintf("tls:%d:", time.Now().UnixNano())
			client, err := redis.Open(ctx, cfg)
			if tc.refused != "" {
				if err == nil {
					client.Close()
					t.Fatalf("Open(%v) connected; want it refused (%s)", tc.env, tc.refused)
				}
				if !strings.Contains(err.Error(), tc.refused) {
					t.Fatalf("Open(%v): %v; want the error to say %q", tc.env, err, tc.refused)
				}
				return
			}
			if err != nil {
				t.Fatalf("Open(%v): %v", tc.env, err)
			}
			defer client.Close()
			c := redis.NewCache(client, cfg, nil)
			defer c.Purge(ctx)
			want := value("k", ver(time.Now().UnixMicro(), 1), "over TLS")
			if err := c.Apply(ctx, []kv.Entry{want}); err != nil {
				t.Fatalf("Apply over TLS: %v", err)
			}
			if got, ok := mustGet(t, ctx, c, "k"); !ok || !sameEntry(got, want) {
				t.Fatalf("Get over TLS = %+v, hit %v; want %+v", got, ok, want)
			}
		})
	}
}

// The cluster client speaks TLS to every node of a Redis Cluster run over
// TLS: the nodes it finds (announced by address, 127.0.0.1) are checked
// against REDIS_TLS_SERVER_NAME; without it, they are refused, and under
// another authority even the seeds are.
func TestClusterTLS(t *testing.T) {
	files := privateCluster.TLSFiles(t)
	seeds := "rediss://" + strings.ReplaceAll(privateCluster.TLSAddr(t), ",", ",rediss://")
	other, err := engine.MakeTLS(t.TempDir(), enginetest.TLSHost)
	if err != nil {
		t.Fatal(err)
	}
	keys := make([]string, 30) // on every master: 30 keys miss one of three shards with odds of 3·(2/3)^30
	for i := range keys {
		keys[i] = fmt.Sprintf("k%d", i)
	}
	for _, tc := range []struct {
		name    string
		env     map[string]string
		refused string
	}{
		{"the right CA and server name", map[string]string{"REDIS_ADDR": seeds, "REDIS_TLS_CA_FILE": files.CA, "REDIS_TLS_SERVER_NAME": enginetest.TLSHost}, ""},
		{"another CA", map[string]string{"REDIS_ADDR": seeds, "REDIS_TLS_CA_FILE": other.CA, "REDIS_TLS_SERVER_NAME": enginetest.TLSHost}, "certificate signed by unknown authority"},
		{"nodes announced by an address not in the certificate", map[string]string{"REDIS_ADDR": seeds, "REDIS_TLS_CA_FILE": files.CA}, "doesn't contain any IP SANs"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testContext(t)
			vars := map[string]string{
				// Loading the system's CAs, the first time, can take longer
				// than the default 1s on a busy machine.
				"REDIS_DIAL_TIMEOUT": "10s",
			}
			maps.Copy(vars, tc.env)
			cfg, err := env.ParseAsWithOptions[redis.Config](env.Options{Environment: vars})
			if err != nil {
				t.Fatal(err)
			}
			cfg.KeyPrefix = fmt.Sprintf("tls:%d:", time.Now().UnixNano())
			var entries []kv.Entry
			for _, k := range keys {
				entries = append(entries, value(k, ver(time.Now().UnixMicro(), 1), "over TLS"))
			}
			client, err := redis.Open(ctx, cfg)
			if err == nil {
				defer client.Close()
				if _, ok := client.(*goredis.ClusterClient); !ok {
					t.Fatalf("REDIS_ADDR=%s made a %T, want a cluster client", cfg.Addr, client)
				}
				c := redis.NewCache(client, cfg, nil)
				defer c.Purge(ctx)
				// The shards marked first, as the consumer does: the
				// first read of an unmarked shard purges it.
				if _, err = c.CheckMasters(ctx); err == nil {
					err = c.Apply(ctx, entries)
				}
			}
			if tc.refused != "" {
				if err == nil || !strings.Contains(err.Error(), tc.refused) {
					t.Fatalf("Open and Apply with %v: %v; want refused, saying %q", tc.env, err, tc.refused)
				}
				return
			}
			if err != nil {
				t.Fatalf("Open and Apply over TLS: %v", err)
			}
			c := redis.NewCache(client, cfg, nil)
			for _, want := range entries {
				if got, ok := mustGet(t, ctx, c, want.Key); !ok || !sameEntry(got, want) {
					t.Fatalf("Get(%q) over TLS = %+v, hit %v; want %+v", want.Key, got, ok, want)
				}
			}
		})
	}
}
