package engines_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	goredis "github.com/redis/go-redis/v9"

	"github.com/kvstack/kvstack/internal/engine"
	"github.com/kvstack/kvstack/internal/kv"
	"github.com/kvstack/kvstack/internal/redis"
	"github.com/kvstack/kvstack/lab/native"
	"github.com/kvstack/kvstack/lab/native/engines"
)

// The ACL users of a stack's own Redis (RedisUsers), on a private
// redis-server started with them: the app's user runs everything the
// cache does, through the cache's own code (the restart mark on connect,
// a fill, a read, an apply, a purge) and nothing outside the cache's keys
// and commands; the exporter's reads the statistics and no key.
func TestRedisUsersHoldLeastPrivilege(t *testing.T) {
	if testing.Short() {
		t.Skip("starts redis-server; not run with -short (make test runs it)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ports, err := engine.FreePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	// Not t.TempDir: its parent is closed to redis-server's user.
	dir, err := os.MkdirTemp("", "kvredisusers-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	s, err := native.Load("../../..", []string{"KV_STACK_DIR=" + dir, "KV_ENGINES=private", fmt.Sprintf("REDIS_PORT=%d", ports[0])})
	if err != nil {
		t.Fatal(err)
	}
	users := engines.RedisUsers(s)
	if len(users) != 2 {
		t.Fatalf("a stack with its own Redis has %d ACL users, want the app's and the exporter's: %+v", len(users), users)
	}
	p, err := engine.Start(ctx, dir, testLog{t}, &engine.Redis{Port: ports[0], Dir: filepath.Join(dir, "redis"), Users: users})
	if err != nil {
		t.Fatalf("starting a private redis-server: %v", err)
	}
	t.Cleanup(func() {
		if err := p.Close(context.Background()); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	addr := fmt.Sprintf("127.0.0.1:%d", ports[0])

	cfg := redis.DefaultConfig()
	cfg.Addr, cfg.Username, cfg.Password, cfg.KeyPrefix = addr, s.Get("REDIS_USERNAME"), redis.Secret(s.Get("REDIS_PASSWORD")), s.RedisKeyPrefix()
	client, err := redis.NewClient(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	cache := redis.NewCache(client, cfg, nil)
	v := kv.Version{Time: time.Now().UTC().Truncate(time.Microsecond), OpID: uuid.New()}
	if _, err := cache.Fill(ctx, kv.Entry{Key: "filled", Value: "a", Version: v}); err != nil {
		t.Errorf("the app's user fills: %v", err)
	}
	if e, err := cache.Get(ctx, "filled"); err != nil || e.Value != "a" {
		t.Errorf("the app's user reads its fill: %+v, %v", e, err)
	}
	if err := cache.Apply(ctx, []kv.Entry{{Key: "applied", Value: "b", Version: v}, {Key: "filled", Version: kv.Version{Time: v.Time.Add(time.Microsecond), OpID: v.OpID}, Deleted: true}}); err != nil {
		t.Errorf("the app's user applies: %v", err)
	}
	if _, err := cache.CheckMasters(ctx); err != nil {
		t.Errorf("the app's user checks the server's mark: %v", err)
	}
	if err := cache.Purge(ctx); err != nil {
		t.Errorf("the app's user purges: %v", err)
	}

	// On a cluster, the cache's mark checks and the client's map ask each
	// node these (checkShard, go-redis): a server without cluster support
	// answers them with an error, but not with NOPERM.
	app := goredis.NewClient(&goredis.Options{Addr: addr, Username: cfg.Username, Password: string(cfg.Password), MaxRetries: -1})
	t.Cleanup(func() { app.Close() })
	for _, sub := range []string{"MYID", "SHARDS", "SLOTS", "NODES"} {
		if err := app.Do(ctx, "CLUSTER", sub).Err(); err != nil && strings.HasPrefix(err.Error(), "NOPERM") {
			t.Errorf("the app's user may not run CLUSTER %s, which the cache runs on a cluster: %v", sub, err)
		}
	}

	noperm := func(what string, err error) {
		t.Helper()
		if err == nil || !strings.HasPrefix(err.Error(), "NOPERM") {
			t.Errorf("%s: %v, want NOPERM", what, err)
		}
	}
	noperm("the app's user writes a key outside "+cfg.KeyPrefix, app.Set(ctx, "outside", "x", time.Minute).Err())
	noperm("the app's user reads a key outside "+cfg.KeyPrefix, app.Get(ctx, "outside").Err())
	noperm("the app's user lists keys", app.Keys(ctx, "*").Err())
	noperm("the app's user flushes", app.FlushAll(ctx).Err())
	noperm("the app's user reconfigures", app.ConfigSet(ctx, "maxmemory", "1").Err())
	noperm("the app's user changes the ACL", app.Do(ctx, "ACL", "SETUSER", "intruder", "on", ">x", "+@all", "~*").Err())

	exporter := goredis.NewClient(&goredis.Options{Addr: addr, Username: s.Get("KV_REDIS_EXPORTER_USERNAME"),
		Password: s.Get("KV_REDIS_EXPORTER_PASSWORD"), MaxRetries: -1})
	t.Cleanup(func() { exporter.Close() })
	if err := exporter.Info(ctx, "server").Err(); err != nil {
		t.Errorf("the exporter's user reads INFO: %v", err)
	}
	noperm("the exporter's user reads a cache entry", exporter.HMGet(ctx, cfg.KeyPrefix+"applied", "v").Err())
	noperm("the exporter's user writes", exporter.Set(ctx, cfg.KeyPrefix+"x", "x", time.Minute).Err())
}

type testLog struct{ t *testing.T }

func (l testLog) Write(b []byte) (int, error) {
	l.t.Logf("%s", b)
	return len(b), nil
}
