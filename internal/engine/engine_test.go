package engine_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	goredis "github.com/redis/go-redis/v9"

	"github.com/kvstack/kvstack/internal/engine"
)

// The lifecycle of private instances: each starts under its own
// supervisord, answers, comes back by itself after kill -9, stops and
// starts cleanly with its data, and is gone after Close. Nothing of the
// machine's shared services is touched: every port is a free one.
func TestPrivateInstancesLifecycle(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL, Redis and RabbitMQ; not run with -short (make test runs it)")
	}
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), engine.AllowForLoad(5*time.Minute))
	defer cancel()
	ports, err := engine.FreePorts(6)
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "kvengine-test-")
	if err != nil {
		t.Fatal(err)
	}
	pg := &engine.Postgres{Port: ports[0], Dir: filepath.Join(dir, "pg")}
	rd := &engine.Redis{Port: ports[1], Dir: filepath.Join(dir, "redis")}
	mq := &engine.RabbitMQ{Node: "kvenginetest-" + filepath.Base(dir) + "@localhost",
		Port: ports[2], DistPort: ports[3], MetricsPort: ports[4], Dir: filepath.Join(dir, "rabbitmq")}
	started := time.Now()
	p, err := engine.Start(ctx, dir, testLog{t}, pg, rd, mq)
	if err != nil {
		t.Fatalf("starting private PostgreSQL, Redis and RabbitMQ (needs supervisor, postgresql, redis-server, rabbitmq-server: make setup-all): %v", err)
	}
	t.Logf("three private instances answering %s after the start", time.Since(started).Round(100*time.Millisecond))
	t.Cleanup(func() {
		if err := p.Close(context.Background()); err != nil {
			t.Errorf("close: %v", err)
		}
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Errorf("%s left behind after Close: %v", dir, err)
		}
	})

	if err := pg.CreateDatabase(ctx, "kvtest", "kvtest", "secret"); err != nil {
		t.Fatalf("create a database: %v", err)
	}
	rdb := goredis.NewClient(&goredis.Options{Addr: rd.Addr()})
	t.Cleanup(func() { rdb.Close() })
	if err := rdb.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("redis SET: %v", err)
	}
	conn, err := amqp.Dial(mq.URL())
	if err != nil {
		t.Fatalf("AMQP to the private node: %v", err)
	}
	conn.Close()
	if q, err := mq.Queues(ctx); err != nil || q == nil {
		t.Fatalf("rabbitmqctl list_queues on the private node: %v, %v", q, err)
	}

	for _, name := range []string{"postgres", "redis", "rabbitmq"} {
		t.Run("kill -9 "+name, func(t *testing.T) {
			killed, err := p.Kill(ctx, name)
			if err != nil {
				t.Fatal(err)
			}
			began := time.Now()
			deadline := time.Now().Add(2 * time.Minute)
			for {
				pid, _ := p.Pid(ctx, name)
				if pid != 0 && pid != killed && p.WaitHealthy(ctx, name) == nil {
					t.Logf("%s back by itself (pid %d → %d) in %s", name, killed, pid, time.Since(began).Round(10*time.Millisecond))
					return
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s not back within 2 min of its kill -9 (pid %d, now %d)", name, killed, pid)
				}
				time.Sleep(100 * time.Millisecond)
			}
		})
	}

	// A clean stop keeps the data: Redis saves its dump on SIGTERM.
	if err := rdb.Set(ctx, "k", "kept", 0).Err(); err != nil {
		t.Fatalf("redis SET after its restart: %v", err)
	}
	for _, name := range []string{"redis", "postgres"} {
		if err := p.Stop(ctx, name); err != nil {
			t.Fatal(err)
		}
		if pid, _ := p.Pid(ctx, name); pid != 0 {
			t.Fatalf("%s stopped but has pid %d: stopped means not restarted", name, pid)
		}
		if err := p.Start(ctx, name); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := rdb.Get(ctx, "k").Result(); err != nil || got != "kept" {
		t.Errorf("after a stop and start Redis holds %q (%v), want its dump's value", got, err)
	}
	if err := pg.CreateDatabase(ctx, "kvtest", "kvtest", "secret"); err != nil {
		t.Errorf("PostgreSQL after a stop and start: %v", err)
	}
}

type testLog struct{ t *testing.T }

func (l testLog) Write(b []byte) (int, error) {
	l.t.Logf("%s", b)
	return len(b), nil
}
