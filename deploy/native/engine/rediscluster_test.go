package engine_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/kvstack/kvstack/deploy/native/engine"
)

// A private Redis Cluster forms once (Form again changes nothing), and a
// master killed with kill -9 is replaced by its replica, then comes back
// by itself as the new master's replica: the cluster heals whole.
func TestRedisCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts six redis-server; not run with -short (make test runs it)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	ports, err := engine.FreePorts(6)
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "kvengine-cluster-")
	if err != nil {
		t.Fatal(err)
	}
	c := &engine.RedisCluster{Ports: ports, Dir: dir}
	started := time.Now()
	p, err := engine.Start(ctx, dir, testLog{t}, c.Engines()...)
	if err != nil {
		t.Fatalf("starting six redis-server in cluster mode (needs supervisor, redis-server: make setup-all): %v", err)
	}
	t.Cleanup(func() {
		if err := p.Close(context.Background()); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	if err := c.Form(ctx); err != nil {
		t.Fatalf("Form: %v", err)
	}
	t.Logf("cluster of six formed and synced %s after the start", time.Since(started).Round(100*time.Millisecond))
	again := time.Now()
	if err := c.Form(ctx); err != nil {
		t.Fatalf("Form of a formed cluster: %v", err)
	}
	if d := time.Since(again); d > 2*time.Second {
		t.Errorf("Form of a formed cluster took %s: it should only check", d)
	}

	rdb := goredis.NewClusterClient(&goredis.ClusterOptions{Addrs: c.Addrs()})
	t.Cleanup(func() { rdb.Close() })
	if err := rdb.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("SET on the cluster: %v", err)
	}
	master, err := c.MasterOf(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	killed, err := p.Kill(ctx, master.Name)
	if err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	promoted := waitNewMaster(t, ctx, c, "k", master)
	t.Logf("master %s (pid %d) killed: %s serves its slots %s later", master.Name, killed, promoted.Name,
		time.Since(began).Round(100*time.Millisecond))

	if err := c.WaitHealthy(ctx); err != nil {
		t.Fatalf("after the kill: %v", err)
	}
	t.Logf("healed (the old master a synced replica) %s after the kill", time.Since(began).Round(100*time.Millisecond))
	role, err := goredis.NewClient(&goredis.Options{Addr: master.Addr()}).Do(ctx, "ROLE").Slice()
	if err != nil || len(role) == 0 || role[0] != "slave" {
		t.Errorf("the killed master came back as %v (%v), want a replica", role, err)
	}
	// Empty after its restart, it copied the new master: the key is there.
	if got, err := rdb.Get(ctx, "k").Result(); err != nil || got != "v" {
		t.Errorf("GET k after the failover = %q, %v; want the replicated value", got, err)
	}
	conf, err := os.ReadFile(master.Dir + "/nodes.conf")
	if err != nil || !strings.Contains(string(conf), "myself,slave") {
		t.Errorf("the old master's nodes.conf does not say it is a replica now (%v):\n%s", err, conf)
	}
}

// waitNewMaster waits until a node other than old serves key's slot.
func waitNewMaster(t *testing.T, ctx context.Context, c *engine.RedisCluster, key string, old *engine.Redis) *engine.Redis {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		// The killed node may be the one MasterOf asks: ask any other.
		n, err := c.MasterOf(ctx, key)
		if err == nil && n.Name != old.Name {
			return n
		}
		if time.Now().After(deadline) {
			t.Fatalf("no new master for %q within a minute of its master's kill: %v, %v", key, n, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
