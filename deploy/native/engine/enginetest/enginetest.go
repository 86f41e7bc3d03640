// Package enginetest gives the tests of a package PRIVATE PostgreSQL,
// Redis, Redis Cluster and RabbitMQ instances to break (stop, start, kill
// a cluster's master), never the shared ones: each is started on first
// use, once per package (a RabbitMQ node takes ~8 s, a Redis Cluster ~5 s),
// on free ports, under a supervisord tied to the test binary, and removed
// by Close, which the package's TestMain calls.
//
//	var broker enginetest.RabbitMQ
//
//	func TestMain(m *testing.M) { code := m.Run(); broker.Close(); os.Exit(code) }
//
//	func TestX(t *testing.T) {
//		t.Setenv("RABBITMQ_URL", broker.URL(t)) // what the code under test uses
//		start := broker.Stop(t)                 // the outage
//		start()                                 // back, and answering
//	}
package enginetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/kvstack/kvstack/deploy/native/engine"
)

// instance is one private engine, started once.
type instance struct {
	mu   sync.Mutex
	p    *engine.Private
	name string
	err  error
	done bool
}

// start runs the engine mk makes (given a directory and free ports) on
// first use; a failure fails every test that needs it, naming it.
func (in *instance) start(tb testing.TB, what string, nports int, mk func(dir string, ports []int) engine.Engine) {
	tb.Helper()
	in.startAll(tb, what, nports, func(dir string, ports []int) ([]engine.Engine, func(context.Context) error) {
		return []engine.Engine{mk(dir, ports)}, nil
	})
}

// startAll runs the engines mk makes on first use, then ready (when not
// nil), which waits until they work together.
func (in *instance) startAll(tb testing.TB, what string, nports int, mk func(dir string, ports []int) ([]engine.Engine, func(context.Context) error)) {
	tb.Helper()
	if testing.Short() {
		tb.Skip("starts a private " + what + "; not run with -short (make test runs it)")
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	if !in.done {
		in.done = true
		in.err = in.launch(what, nports, mk)
	}
	if in.err != nil {
		tb.Fatalf("private %s: %v", what, in.err)
	}
}

func (in *instance) launch(what string, nports int, mk func(string, []int) ([]engine.Engine, func(context.Context) error)) error {
	ports, err := engine.FreePorts(nports)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "kvengine-")
	if err != nil {
		return err
	}
	engines, ready := mk(dir, ports)
	in.name = engines[0].Program().Name
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	started := time.Now()
	in.p, err = engine.Start(ctx, dir, nil, engines...)
	if err != nil {
		return fmt.Errorf("%w (needs supervisor and the engine's package: make setup-all)", err)
	}
	if ready != nil {
		if err := ready(ctx); err != nil {
			return err
		}
	}
	fmt.Fprintf(os.Stderr, "enginetest: private %s up in %s (%s)\n", what, time.Since(started).Round(100*time.Millisecond), dir)
	return nil
}

// stop stops the instance and returns a function that starts it again
// and waits until it answers; that function also runs at the test's end,
// whatever happens, and is safe to call more than once.
func (in *instance) stop(tb testing.TB) (start func()) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	started := false
	start = func() {
		tb.Helper()
		if started {
			return
		}
		started = true
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		if err := in.p.Start(ctx, in.name); err != nil {
			tb.Errorf("starting the private %s again: %v", in.name, err)
		}
	}
	tb.Cleanup(start)
	if err := in.p.Stop(ctx, in.name); err != nil {
		tb.Fatalf("stopping the private %s: %v", in.name, err)
	}
	return start
}

// Close stops and removes the instance, when it was started.
func (in *instance) Close() {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.p == nil {
		return
	}
	if err := in.p.Close(context.Background()); err != nil {
		fmt.Fprintf(os.Stderr, "enginetest: %v\n", err)
	}
	in.p = nil
}

// Postgres is a private PostgreSQL cluster (trust authentication).
type Postgres struct {
	instance
	e *engine.Postgres
}

// URL is the superuser's URL to database postgres; it starts the cluster
// on first use.
func (pg *Postgres) URL(tb testing.TB) string {
	tb.Helper()
	pg.start(tb, "PostgreSQL", 1, func(dir string, ports []int) engine.Engine {
		pg.e = &engine.Postgres{Port: ports[0], Dir: filepath.Join(dir, "pg")}
		return pg.e
	})
	return pg.e.URL("postgres", "", "postgres")
}

// Stop stops the cluster (fast shutdown); start brings it back.
func (pg *Postgres) Stop(tb testing.TB) (start func()) {
	tb.Helper()
	pg.URL(tb)
	return pg.stop(tb)
}

// Redis is a private redis-server.
type Redis struct {
	instance
	e *engine.Redis
}

// Addr is its host:port; it starts the server on first use.
func (r *Redis) Addr(tb testing.TB) string {
	tb.Helper()
	r.start(tb, "Redis", 1, func(dir string, ports []int) engine.Engine {
		r.e = &engine.Redis{Port: ports[0], Dir: filepath.Join(dir, "redis")}
		return r.e
	})
	return r.e.Addr()
}

// Stop stops the server (it saves its dump); start brings it back.
func (r *Redis) Stop(tb testing.TB) (start func()) {
	tb.Helper()
	r.Addr(tb)
	return r.stop(tb)
}

// RabbitMQ is a private RabbitMQ node.
type RabbitMQ struct {
	instance
	e *engine.RabbitMQ
}

// URL is its AMQP URL; it starts the node on first use.
func (mq *RabbitMQ) URL(tb testing.TB) string {
	tb.Helper()
	mq.start(tb, "RabbitMQ", 3, func(dir string, ports []int) engine.Engine {
		var b [4]byte
		_, _ = rand.Read(b[:])
		mq.e = &engine.RabbitMQ{Node: "kvtest-" + hex.EncodeToString(b[:]) + "@localhost",
			Port: ports[0], DistPort: ports[1], MetricsPort: ports[2], Dir: filepath.Join(dir, "rabbitmq")}
		return mq.e
	})
	return mq.e.URL()
}

// Stop stops the node (orderly); start brings it back.
func (mq *RabbitMQ) Stop(tb testing.TB) (start func()) {
	tb.Helper()
	mq.URL(tb)
	return mq.stop(tb)
}

// RedisCluster is a private Redis Cluster of three masters and three
// replicas (engine.RedisCluster), formed and synced before first use.
type RedisCluster struct {
	instance
	c *engine.RedisCluster
}

// Addr is the nodes' addresses joined by commas, as REDIS_ADDR takes a
// cluster's; it starts the cluster on first use.
func (rc *RedisCluster) Addr(tb testing.TB) string {
	tb.Helper()
	return strings.Join(rc.Cluster(tb).Addrs(), ",")
}

// Cluster is the cluster's description (its nodes, ports, Form and
// WaitHealthy); it starts the cluster on first use.
func (rc *RedisCluster) Cluster(tb testing.TB) *engine.RedisCluster {
	tb.Helper()
	rc.startAll(tb, "Redis Cluster", 6, func(dir string, ports []int) ([]engine.Engine, func(context.Context) error) {
		rc.c = &engine.RedisCluster{Ports: ports, Dir: filepath.Join(dir, "redis-cluster")}
		return rc.c.Engines(), rc.c.Form
	})
	return rc.c
}

// MasterOf is the node that serves key's slot now.
func (rc *RedisCluster) MasterOf(tb testing.TB, key string) *engine.Redis {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	n, err := rc.Cluster(tb).MasterOf(ctx, key)
	if err != nil {
		tb.Fatalf("private Redis Cluster: %v", err)
	}
	return n
}

// Kill kills a node with SIGKILL, as a crash would; it comes back by
// itself after the cluster's restart delay (its replica has taken over by
// then, if it was a master). At the test's end the cluster is waited for
// until it is whole again, so that the next test starts on a healthy one.
func (rc *RedisCluster) Kill(tb testing.TB, node *engine.Redis) {
	tb.Helper()
	c := rc.Cluster(tb)
	tb.Cleanup(func() {
		tb.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := c.WaitHealthy(ctx); err != nil {
			tb.Errorf("private Redis Cluster after the kill of %s: %v", node.Name, err)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := rc.p.Kill(ctx, node.Name); err != nil {
		tb.Fatalf("kill -9 %s: %v", node.Name, err)
	}
}

// WaitNewMaster waits until a node other than old serves key's slot (its
// replica promoted) and returns it.
func (rc *RedisCluster) WaitNewMaster(tb testing.TB, key string, old *engine.Redis) *engine.Redis {
	tb.Helper()
	c := rc.Cluster(tb)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for {
		n, err := c.MasterOf(ctx, key)
		if err == nil && n.Name != old.Name {
			return n
		}
		if ctx.Err() != nil {
			tb.Fatalf("no new master for %q within a minute (master %v, %v)", key, n, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// CutReplica cuts master's replica off and keeps it off until the test
// ends (it offers a password the master does not have), so that what the
// master acknowledges next is never replicated: the lost update of
// asynchronous replication, once the master dies and the replica is
// promoted. It returns the replica.
func (rc *RedisCluster) CutReplica(tb testing.TB, master *engine.Redis) *engine.Redis {
	tb.Helper()
	c := rc.Cluster(tb)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	replica, err := c.ReplicaOf(ctx, master)
	if err != nil {
		tb.Fatalf("private Redis Cluster: %v", err)
	}
	rdb := goredis.NewClient(&goredis.Options{Addr: replica.Addr()})
	tb.Cleanup(func() {
		defer rdb.Close()
		if err := rdb.ConfigSet(context.Background(), "masterauth", "").Err(); err != nil {
			tb.Errorf("reset masterauth on %s: %v", replica.Name, err)
		}
	})
	if err := rdb.ConfigSet(ctx, "masterauth", "not-the-masters-password").Err(); err != nil {
		tb.Fatalf("cut %s off: %v", replica.Name, err)
	}
	if err := rdb.Do(ctx, "CLIENT", "KILL", "TYPE", "master").Err(); err != nil {
		tb.Fatalf("cut %s off: %v", replica.Name, err)
	}
	for {
		info, err := rdb.Info(ctx, "replication").Result()
		if err == nil && !strings.Contains(info, "master_link_status:up") {
			return replica
		}
		if ctx.Err() != nil {
			tb.Fatalf("%s still linked to its master: %v", replica.Name, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Freeze stops a node with SIGSTOP, as a hung host or a partition would
// look to its clients (connections open, no answer), and returns a
// function that resumes it (SIGCONT), which also runs at the test's end.
func (rc *RedisCluster) Freeze(tb testing.TB, node *engine.Redis) (thaw func()) {
	tb.Helper()
	rc.Cluster(tb)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pid, err := rc.p.Pid(ctx, node.Name)
	if err != nil || pid == 0 {
		tb.Fatalf("pid of %s: %d, %v", node.Name, pid, err)
	}
	thawed := false
	thaw = func() {
		if !thawed {
			thawed = true
			if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
				tb.Errorf("SIGCONT %s: %v", node.Name, err)
			}
		}
	}
	tb.Cleanup(thaw)
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		tb.Fatalf("SIGSTOP %s: %v", node.Name, err)
	}
	return thaw
}
