// Package enginetest gives the tests of a package PRIVATE PostgreSQL,
// Redis and RabbitMQ instances to break (stop, start), never the shared
// ones: each is started on first use, once per package (a RabbitMQ node
// takes ~8 s), on free ports, under a supervisord tied to the test binary,
// and removed by Close, which the package's TestMain calls.
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
	"sync"
	"testing"
	"time"

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

// start runs the engines mk makes (given a directory and free ports) on
// first use; a failure fails every test that needs them, naming them.
func (in *instance) start(tb testing.TB, what string, nports int, mk func(dir string, ports []int) []engine.Engine) {
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

func (in *instance) launch(what string, nports int, mk func(string, []int) []engine.Engine) error {
	ports, err := engine.FreePorts(nports)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "kvengine-")
	if err != nil {
		return err
	}
	engines := mk(dir, ports)
	in.name = engines[0].Program().Name
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	started := time.Now()
	in.p, err = engine.Start(ctx, dir, nil, engines...)
	if err != nil {
		return fmt.Errorf("%w (needs supervisor and the engine's package: make setup-all)", err)
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
	pg.start(tb, "PostgreSQL", 1, func(dir string, ports []int) []engine.Engine {
		pg.e = &engine.Postgres{Port: ports[0], Dir: filepath.Join(dir, "pg")}
		return []engine.Engine{pg.e}
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
	r.start(tb, "Redis", 1, func(dir string, ports []int) []engine.Engine {
		r.e = &engine.Redis{Port: ports[0], Dir: filepath.Join(dir, "redis")}
		return []engine.Engine{r.e}
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
	mq.start(tb, "RabbitMQ", 3, func(dir string, ports []int) []engine.Engine {
		var b [4]byte
		_, _ = rand.Read(b[:])
		mq.e = &engine.RabbitMQ{Node: "kvtest-" + hex.EncodeToString(b[:]) + "@localhost",
			Port: ports[0], DistPort: ports[1], MetricsPort: ports[2], Dir: filepath.Join(dir, "rabbitmq")}
		return []engine.Engine{mq.e}
	})
	return mq.e.URL()
}

// Stop stops the node (orderly); start brings it back.
func (mq *RabbitMQ) Stop(tb testing.TB) (start func()) {
	tb.Helper()
	mq.URL(tb)
	return mq.stop(tb)
}

// PostgresPair is a private PostgreSQL primary and its synchronous
// standby (engine.PostgresPair), nodes pg1 and pg2.
type PostgresPair struct {
	instance
	pair *engine.PostgresPair
	lost *engine.Postgres // a primary KillPrimary took down, not yet rejoined
}

// Pair is the pair, whole and synchronous: it starts both nodes on first
// use, and makes a primary an earlier test killed rejoin as the standby
// (a test that leaves the pair broken does not pay for its repair, which
// takes seconds, unless another test needs it).
func (pp *PostgresPair) Pair(tb testing.TB) *engine.PostgresPair {
	tb.Helper()
	pp.start(tb, "PostgreSQL primary and standby", 2, func(dir string, ports []int) []engine.Engine {
		pp.pair = engine.NewPostgresPair(
			&engine.Postgres{Name: "pg1", Port: ports[0], Dir: filepath.Join(dir, "pg1")},
			&engine.Postgres{Name: "pg2", Port: ports[1], Dir: filepath.Join(dir, "pg2")})
		return pp.pair.Engines()
	})
	pp.mu.Lock()
	defer pp.mu.Unlock()
	if pp.lost != nil {
		if err := pp.heal(); err != nil {
			tb.Fatalf("the old primary %s rejoining as the standby: %v", pp.lost.Program().Name, err)
		}
		pp.lost = nil
	}
	return pp.pair
}

// heal promotes the standby if a test killed the primary and did not, then
// makes the lost primary rejoin.
func (pp *PostgresPair) heal() error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	sup := pp.p.Stack().Supervisor()
	if _, err := pp.pair.Primary(ctx); err != nil {
		if _, err := pp.pair.Promote(ctx, sup); err != nil {
			return err
		}
	}
	return pp.pair.Rejoin(ctx, sup, pp.lost)
}

// URL is the superuser's multi-host URL to database postgres, with
// target_session_attrs=read-write: it reaches whichever node is primary.
func (pp *PostgresPair) URL(tb testing.TB) string {
	tb.Helper()
	return pp.Pair(tb).DatabaseURL("postgres", "", "postgres")
}

// Failover is the primary's crash and the harness's answer: KillPrimary,
// then Promote at once.
func (pp *PostgresPair) Failover(tb testing.TB) (primary *engine.Postgres, killed time.Time) {
	tb.Helper()
	killed = pp.KillPrimary(tb)
	return pp.Promote(tb), killed
}

// KillPrimary kills the primary (-9) and keeps it down, as a lost machine;
// the next test that asks for the pair finds it rejoined as the standby of
// the new primary. It returns when the kill happened.
func (pp *PostgresPair) KillPrimary(tb testing.TB) (killed time.Time) {
	tb.Helper()
	pair := pp.Pair(tb)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	old, err := pair.Primary(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	pp.mu.Lock()
	pp.lost = old
	pp.mu.Unlock()
	if err := pp.p.Fence(ctx, old.Program().Name); err != nil {
		tb.Fatal(err)
	}
	return time.Now()
}

// Promote promotes the standby (engine.PostgresPair.Promote) and returns
// the new primary.
func (pp *PostgresPair) Promote(tb testing.TB) *engine.Postgres {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if pp.pair == nil {
		tb.Fatal("enginetest: Promote before the pair was started")
	}
	primary, err := pp.pair.Promote(ctx, pp.p.Stack().Supervisor())
	if err != nil {
		tb.Fatalf("promoting the standby: %v", err)
	}
	return primary
}
