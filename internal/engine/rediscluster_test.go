package engine_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/kvstack/kvstack/internal/engine"
)

// A private Redis Cluster forms once (Form again changes nothing), and a
// master killed with kill -9 is replaced by its replica, then comes back
// by itself as the new master's replica: the cluster heals whole.
func TestRedisCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts six redis-server; not run with -short (make test runs it)")
	}
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), engine.AllowForLoad(3*time.Minute))
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
	master, err := c.MasterOf(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	// The SET, and WAIT on the same connection until the replica has it:
	// replication is asynchronous, and a kill right after an unreplicated
	// SET loses it (a CI run at load 15–26 read nil after the failover).
	direct := goredis.NewClient(&goredis.Options{Addr: master.Addr()})
	t.Cleanup(func() { direct.Close() })
	var wait *goredis.Cmd
	if _, err := direct.Pipelined(ctx, func(p goredis.Pipeliner) error {
		p.Set(ctx, "k", "v", 0)
		wait = p.Do(ctx, "WAIT", 1, 10000) // ms
		return nil
	}); err != nil {
		t.Fatalf("SET k on its master %s: %v", master.Name, err)
	}
	if n, err := wait.Int64(); err != nil || n < 1 {
		t.Fatalf("WAIT 1 after SET k on %s = %d replicas, %v; want the replica to have it", master.Name, n, err)
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

// Each node is a program of its own, named, placed and logged as the
// stack expects, in cluster mode, waiting RestartDelay only once it has a
// nodes.conf.
func TestRedisClusterPrograms(t *testing.T) {
	c := &engine.RedisCluster{Ports: []int{7001, 7002, 7003, 7004, 7005, 7006}, Dir: "/st/engines/redis", LogDir: "/st/logs"}
	if got := strings.Join(c.Addrs(), ","); !strings.HasPrefix(got, "127.0.0.1:7001,127.0.0.1:7002") {
		t.Errorf("Addrs = %s", got)
	}
	for i, e := range c.Engines() {
		p := e.Program()
		name := "redis-cluster" + string(rune('1'+i))
		cmd := strings.Join(p.Command, " ")
		if p.Name != name || p.Dir != "/st/engines/redis/"+name || p.Log != "/st/logs/"+name+".log" || p.Priority != 1 {
			t.Errorf("node %d: %s in %s logging to %s, priority %d", i+1, p.Name, p.Dir, p.Log, p.Priority)
		}
		for _, want := range []string{
			"--cluster-enabled yes", "--cluster-config-file /st/engines/redis/" + name + "/nodes.conf",
			"--cluster-node-timeout 3000", "--cluster-replica-validity-factor 0", "--save  --appendonly no",
			"/st/engines/redis/" + name + "/nodes.conf 9 redis-server", // sh's $1, $2 and the command
		} {
			if !strings.Contains(cmd, want) {
				t.Errorf("node %d's command lacks %q:\n%s", i+1, want, cmd)
			}
		}
	}
	if n := c.Node("127.0.0.1:7004"); n == nil || n.Name != "redis-cluster4" {
		t.Errorf("Node(127.0.0.1:7004) = %v", n)
	}
}
