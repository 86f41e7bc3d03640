// Package enginetest gives the tests of a package PRIVATE PostgreSQL,
// Redis, Redis Cluster and RabbitMQ instances to break (stop, start, kill
// -9, a cluster's node), never the shared ones: each is started on first
// use, once per package (a RabbitMQ node takes ~8 s, a cluster of three
// ~30 s, a Redis Cluster ~5 s), on free ports, under a supervisord tied to
// the test binary, and removed by Close, which the package's TestMain calls.
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
//
// A RabbitMQCluster is used alike, by node: cluster.Kill(t, i),
// cluster.Stop(t, i, j), cluster.Start(t, i, j); each test that breaks it
// leaves it whole again when it ends.
//
// A Patroni cluster (a primary and its synchronous standby, each run by
// Patroni, ~20 s) fails over as in the HA topology: pg.URL(t) is the
// multi-host URL, pg.KillPrimary(t) the lost primary's machine,
// pg.Promoted(t) waits for Patroni's promotion (pg.Failover(t) both). The
// lost node comes back as the standby when the next test asks for the
// cluster.
package enginetest

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	goredis "github.com/redis/go-redis/v9"

	"github.com/kvstack/kvstack/internal/engine"
)

// instance is one private engine, or the nodes of one cluster, started
// once.
type instance struct {
	mu   sync.Mutex
	p    *engine.Private
	name string // the program (the first node of a cluster)
	err  error
	done bool
}

// start runs the engines mk makes (given a directory and free ports) on
// first use; a failure fails every test that needs them, naming them.
func (in *instance) start(tb testing.TB, what string, nports int, mk func(dir string, ports []int) []engine.Engine) {
	tb.Helper()
	in.startAll(tb, what, nports, func(dir string, ports []int) ([]engine.Engine, func(context.Context) error) {
		return mk(dir, ports), nil
	})
}

// startAll runs the engines mk makes on first use, then ready (when not
// nil), which waits until they work together (a cluster's Form).
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
	ctx, cancel := context.WithTimeout(context.Background(), startBound())
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
	name := in.name
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	started := false
	start = func() {
		tb.Helper()
		if started {
			return
		}
		started = true
		ctx, cancel := context.WithTimeout(context.Background(), startBound())
		defer cancel()
		if err := in.p.Start(ctx, name); err != nil {
			tb.Errorf("starting the private %s again: %v", name, err)
		}
	}
	tb.Cleanup(start)
	if err := in.p.Stop(ctx, name); err != nil {
		tb.Fatalf("stopping the private %s: %v", name, err)
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

// startBound bounds a start of private engines and what follows it (a
// cluster formed, a standby synchronous): 3 minutes for a quiet machine,
// allowing for the load as a test does (engine.AllowForLoad), since the
// engines read their start bound later, at a load their boots raise.
func startBound() time.Duration { return engine.AllowForLoad(engine.BaseStartTimeout + time.Minute) }

// TLSHost is the one name the certificate of an engine started with TLS
// carries: a client that dials 127.0.0.1, the same server, meets a
// certificate that is not for that name.
const TLSHost = "localhost"

// makeTLS makes the TLS files of an engine started with TLS (nil without).
func makeTLS(on bool, dir string) *engine.TLS {
	if !on {
		return nil
	}
	t, err := engine.MakeTLS(filepath.Join(dir, "tls"), TLSHost)
	if err != nil {
		panic(err) // a temporary directory that cannot be written to
	}
	return t
}

// tlsFiles is t, or the test's failure when the engine has no TLS.
func tlsFiles(tb testing.TB, t *engine.TLS, what string) *engine.TLS {
	tb.Helper()
	if t == nil {
		tb.Fatalf("enginetest: the private %s was not started with TLS (set its TLS field before first use)", what)
	}
	return t
}

// Postgres is a private PostgreSQL cluster (trust authentication). With
// TLS set before first use, it also serves TLS (ssl=on, on the same
// port) with a certificate for TLSHost signed by a CA of its own
// (TLSFiles).
type Postgres struct {
	TLS bool
	instance
	e *engine.Postgres
}

// URL is the superuser's URL to database postgres; it starts the cluster
// on first use.
func (pg *Postgres) URL(tb testing.TB) string {
	tb.Helper()
	pg.start(tb, "PostgreSQL", 1, func(dir string, ports []int) []engine.Engine {
		pg.e = &engine.Postgres{Port: ports[0], Dir: filepath.Join(dir, "pg"), TLS: makeTLS(pg.TLS, dir)}
		return []engine.Engine{pg.e}
	})
	return pg.e.URL("postgres", "", "postgres")
}

// TLSFiles are the CA, certificate and key the cluster serves TLS with.
func (pg *Postgres) TLSFiles(tb testing.TB) *engine.TLS {
	tb.Helper()
	pg.URL(tb)
	return tlsFiles(tb, pg.e.TLS, "PostgreSQL")
}

// Stop stops the cluster (fast shutdown); start brings it back.
func (pg *Postgres) Stop(tb testing.TB) (start func()) {
	tb.Helper()
	pg.URL(tb)
	return pg.stop(tb)
}

// Redis is a private redis-server. With TLS set before first use, it also
// serves TLS on a port of its own (TLSAddr) with a certificate for TLSHost
// signed by a CA of its own (TLSFiles).
type Redis struct {
	TLS bool
	instance
	e *engine.Redis
}

// Addr is its host:port; it starts the server on first use.
func (r *Redis) Addr(tb testing.TB) string {
	tb.Helper()
	r.start(tb, "Redis", 2, func(dir string, ports []int) []engine.Engine {
		r.e = &engine.Redis{Port: ports[0], Dir: filepath.Join(dir, "redis"), TLS: makeTLS(r.TLS, dir), TLSPort: ports[1]}
		return []engine.Engine{r.e}
	})
	return r.e.Addr()
}

// TLSAddr is TLSHost:port of its TLS listener.
func (r *Redis) TLSAddr(tb testing.TB) string {
	tb.Helper()
	r.TLSFiles(tb)
	return net.JoinHostPort(TLSHost, strconv.Itoa(r.e.TLSPort))
}

// TLSFiles are the CA, certificate and key the server serves TLS with.
func (r *Redis) TLSFiles(tb testing.TB) *engine.TLS {
	tb.Helper()
	r.Addr(tb)
	return tlsFiles(tb, r.e.TLS, "Redis")
}

// Stop stops the server (it saves its dump); start brings it back.
func (r *Redis) Stop(tb testing.TB) (start func()) {
	tb.Helper()
	r.Addr(tb)
	return r.stop(tb)
}

// RabbitMQ is a private RabbitMQ node. With TLS set before first use, it
// also serves AMQP over TLS on a port of its own (TLSURL) with a
// certificate for TLSHost signed by a CA of its own (TLSFiles).
type RabbitMQ struct {
	TLS bool
	instance
	e *engine.RabbitMQ
}

// URL is its AMQP URL; it starts the node on first use.
func (mq *RabbitMQ) URL(tb testing.TB) string {
	tb.Helper()
	mq.start(tb, "RabbitMQ", 4, func(dir string, ports []int) []engine.Engine {
		var b [4]byte
		_, _ = rand.Read(b[:])
		mq.e = &engine.RabbitMQ{Node: "kvtest-" + hex.EncodeToString(b[:]) + "@localhost",
			Port: ports[0], DistPort: ports[1], MetricsPort: ports[2], Dir: filepath.Join(dir, "rabbitmq"),
			TLS: makeTLS(mq.TLS, dir), TLSPort: ports[3]}
		return []engine.Engine{mq.e}
	})
	return mq.e.URL()
}

// TLSURL is the amqps:// URL of its TLS listener, at TLSHost (guest,
// which RabbitMQ admits from loopback only).
func (mq *RabbitMQ) TLSURL(tb testing.TB) string {
	tb.Helper()
	mq.TLSFiles(tb)
	return "amqps://guest:guest@" + net.JoinHostPort(TLSHost, strconv.Itoa(mq.e.TLSPort)) + "/"
}

// TLSFiles are the CA, certificate and key the node serves TLS with.
func (mq *RabbitMQ) TLSFiles(tb testing.TB) *engine.TLS {
	tb.Helper()
	mq.URL(tb)
	return tlsFiles(tb, mq.e.TLS, "RabbitMQ")
}

// ImportDefinitions imports a RabbitMQ definitions file into the node.
func (mq *RabbitMQ) ImportDefinitions(tb testing.TB, file string) {
	tb.Helper()
	mq.URL(tb)
	if err := mq.e.ImportDefinitions(context.Background(), file); err != nil {
		tb.Fatal(err)
	}
}

// Stop stops the node (orderly); start brings it back.
func (mq *RabbitMQ) Stop(tb testing.TB) (start func()) {
	tb.Helper()
	mq.URL(tb)
	return mq.stop(tb)
}

// Patroni is a private PostgreSQL primary and its synchronous standby,
// nodes pg1 and pg2, each run by its Patroni on an etcd of their own
// (engine.Patroni), as the HA topology runs them.
type Patroni struct {
	instance
	cluster *engine.Patroni
	lost    *engine.PatroniNode // a primary KillPrimary took down, not yet back
}

// Cluster is the cluster, whole and synchronous: it starts etcd and both
// nodes on first use, and brings back a primary an earlier test killed
// (Patroni rewinds it into the standby; a test that leaves the cluster
// broken does not pay for its repair, which takes seconds, unless another
// test needs it).
func (pt *Patroni) Cluster(tb testing.TB) *engine.Patroni {
	tb.Helper()
	pt.startAll(tb, "etcd and two Patroni nodes", 6, func(dir string, ports []int) ([]engine.Engine, func(context.Context) error) {
		pt.cluster = engine.NewPatroni("kvtest", &engine.Etcd{Port: ports[0], PeerPort: ports[1], Dir: filepath.Join(dir, "etcd")},
			&engine.PatroniNode{Name: "pg1", Port: ports[2], RestPort: ports[3], Dir: filepath.Join(dir, "pg1")},
			&engine.PatroniNode{Name: "pg2", Port: ports[4], RestPort: ports[5], Dir: filepath.Join(dir, "pg2")})
		return pt.cluster.Engines(), pt.synchronous
	})
	pt.mu.Lock()
	defer pt.mu.Unlock()
	if pt.lost != nil {
		ctx, cancel := context.WithTimeout(context.Background(), startBound())
		defer cancel()
		err := pt.p.Start(ctx, pt.lost.Name)
		if err == nil {
			err = pt.synchronous(ctx)
		}
		if err != nil {
			tb.Fatalf("the old primary %s back as the standby: %v", pt.lost.Name, err)
		}
		pt.lost = nil
	}
	return pt.cluster
}

// synchronous waits until Patroni reports a leader and a synchronous
// standby caught up.
func (pt *Patroni) synchronous(ctx context.Context) error {
	for {
		err := pt.cluster.Synchronous(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// URL is the superuser's multi-host URL to database postgres, with
// target_session_attrs=read-write: it reaches whichever node is primary.
func (pt *Patroni) URL(tb testing.TB) string {
	tb.Helper()
	return pt.Cluster(tb).DatabaseURL("postgres", "", "postgres")
}

// Failover is the primary's machine lost and Patroni's answer:
// KillPrimary, then Promoted.
func (pt *Patroni) Failover(tb testing.TB) (primary *engine.PatroniNode, killed time.Time) {
	tb.Helper()
	killed = pt.KillPrimary(tb)
	return pt.Promoted(tb), killed
}

// KillPrimary kills the primary's Patroni and postgres (-9) and keeps them
// down, as a lost machine (engine.PatroniNode.Lose); the next test that
// asks for the cluster finds it back as the new primary's standby. It
// returns when the kill happened.
func (pt *Patroni) KillPrimary(tb testing.TB) (killed time.Time) {
	tb.Helper()
	cluster := pt.Cluster(tb)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	old, err := cluster.Primary(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	pt.mu.Lock()
	pt.lost = old
	pt.mu.Unlock()
	if err := old.Lose(ctx, pt.p.Stack().Supervisor()); err != nil {
		tb.Fatal(err)
	}
	return time.Now()
}

// Promoted waits until Patroni has promoted the standby of the primary
// KillPrimary took down (once the leader key expires: about ttl) and the
// new primary takes read-write sessions (Patroni answers /primary as it
// asks postgres to promote, a moment before), and returns it.
func (pt *Patroni) Promoted(tb testing.TB) *engine.PatroniNode {
	tb.Helper()
	pt.mu.Lock()
	lost := pt.lost
	pt.mu.Unlock()
	if pt.cluster == nil || lost == nil {
		tb.Fatal("enginetest: Promoted before KillPrimary")
	}
	deadline := time.Now().Add(time.Minute)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		primary, err := pt.cluster.Primary(ctx)
		if err == nil && primary != lost {
			var conn *pgx.Conn
			if conn, err = pgx.Connect(ctx, primary.URL("postgres", "", "postgres")+"&target_session_attrs=read-write"); err == nil {
				conn.Close(ctx)
				cancel()
				return primary
			}
		}
		cancel()
		if time.Now().After(deadline) {
			tb.Fatalf("no standby promoted a minute after %s was lost: %v", lost.Name, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// RedisCluster is a private Redis Cluster of three masters and three
// replicas (engine.RedisCluster), formed and synced before first use.
// With TLS set before first use, its nodes also serve TLS, and run the
// cluster over it, with a certificate for TLSHost signed by a CA of its
// own (TLSAddr, TLSFiles).
type RedisCluster struct {
	TLS bool
	instance
	c *engine.RedisCluster
}

// TLSAddr is the nodes' TLS addresses, at TLSHost, joined by commas.
func (rc *RedisCluster) TLSAddr(tb testing.TB) string {
	tb.Helper()
	c := rc.Cluster(tb)
	tlsFiles(tb, c.TLS, "Redis Cluster")
	var addrs []string
	for _, p := range c.TLSPorts {
		addrs = append(addrs, net.JoinHostPort(TLSHost, strconv.Itoa(p)))
	}
	return strings.Join(addrs, ",")
}

// TLSFiles are the CA, certificate and key the nodes serve TLS with.
func (rc *RedisCluster) TLSFiles(tb testing.TB) *engine.TLS {
	tb.Helper()
	return tlsFiles(tb, rc.Cluster(tb).TLS, "Redis Cluster")
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
	nports := 6
	if rc.TLS {
		nports = 18 // with TLS ports, and bus ports of their own: a TLS port + 10000 is nobody's to take
	}
	rc.startAll(tb, "Redis Cluster", nports, func(dir string, ports []int) ([]engine.Engine, func(context.Context) error) {
		rc.c = &engine.RedisCluster{Ports: ports[:6], Dir: filepath.Join(dir, "redis-cluster"), TLS: makeTLS(rc.TLS, dir)}
		if rc.TLS {
			rc.c.TLSPorts, rc.c.BusPorts = ports[6:12], ports[12:]
		}
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

// RabbitMQCluster is a private cluster of three RabbitMQ nodes, formed at
// first boot, for quorum queues; its nodes are killed, stopped and started
// by index. Each test that breaks a node leaves the cluster whole again
// (every node back, every member running) when it ends.
type RabbitMQCluster struct {
	instance
	c *engine.RabbitMQCluster
}

// ClusterSize is the number of nodes of a RabbitMQCluster.
const ClusterSize = 3

func (mc *RabbitMQCluster) cluster(tb testing.TB) *engine.RabbitMQCluster {
	tb.Helper()
	mc.startAll(tb, "RabbitMQ cluster", ClusterSize*engine.PortsPerNode, func(dir string, ports []int) ([]engine.Engine, func(context.Context) error) {
		var b [4]byte
		_, _ = rand.Read(b[:])
		mc.c = engine.NewRabbitMQCluster("rabbitmq", "kvtest-"+hex.EncodeToString(b[:])+"-", dir, ports)
		return mc.c.Engines(), mc.c.Form
	})
	return mc.c
}

// URL lists the nodes' AMQP URLs, comma-separated (RABBITMQ_URL for a
// cluster); it starts the cluster on first use and returns once it formed.
func (mc *RabbitMQCluster) URL(tb testing.TB) string {
	tb.Helper()
	return mc.cluster(tb).URL()
}

// Nodes are the cluster's nodes, in the order of URL.
func (mc *RabbitMQCluster) Nodes(tb testing.TB) []*engine.RabbitMQ {
	tb.Helper()
	return mc.cluster(tb).Nodes
}

// NodeOf is the index of the node that listens on the AMQP port of
// address (host:port), or -1.
func (mc *RabbitMQCluster) NodeOf(tb testing.TB, address string) int {
	tb.Helper()
	for i, n := range mc.Nodes(tb) {
		if n.URL() == "amqp://guest:guest@"+address+"/" {
			return i
		}
	}
	return -1
}

// Kill sends SIGKILL to node i (from 0), as a crash would; its supervisor
// restarts it by itself. It returns the pid killed.
func (mc *RabbitMQCluster) Kill(tb testing.TB, i int) int {
	tb.Helper()
	c := mc.cluster(tb)
	tb.Cleanup(func() { mc.Whole(tb) })
	pid, err := mc.p.Kill(context.Background(), c.Nodes[i].Program().Name)
	if err != nil {
		tb.Fatalf("kill -9 of RabbitMQ node %s: %v", c.Nodes[i].Node, err)
	}
	return pid
}

// Stop stops nodes (indexes from 0), orderly, all at once; the supervisor
// does not restart them. Start, or the test's end, brings them back.
func (mc *RabbitMQCluster) Stop(tb testing.TB, nodes ...int) {
	tb.Helper()
	c := mc.cluster(tb)
	tb.Cleanup(func() { mc.Whole(tb) })
	err := mc.each(nodes, func(ctx context.Context, name string) error { return mc.p.Stop(ctx, name) })
	if err != nil {
		tb.Fatalf("stopping RabbitMQ nodes %v of %v: %v", nodes, c.Names(), err)
	}
}

// Start starts stopped nodes all at once and waits until each answers
// (not until the cluster is whole: others may still be down).
func (mc *RabbitMQCluster) Start(tb testing.TB, nodes ...int) {
	tb.Helper()
	c := mc.cluster(tb)
	if err := mc.each(nodes, mc.startNode); err != nil {
		tb.Fatalf("starting RabbitMQ nodes %v of %v: %v", nodes, c.Names(), err)
	}
}

// Whole starts whatever node is stopped and waits until every node runs
// and the cluster has all its members.
func (mc *RabbitMQCluster) Whole(tb testing.TB) {
	tb.Helper()
	c := mc.cluster(tb)
	all := make([]int, len(c.Nodes))
	for i := range all {
		all[i] = i
	}
	if err := mc.each(all, mc.startNode); err != nil {
		tb.Fatalf("RabbitMQ nodes not back: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), startBound())
	defer cancel()
	if err := c.Form(ctx); err != nil {
		tb.Fatalf("RabbitMQ cluster not whole again: %v", err)
	}
}

// startNode starts a node unless it runs (or is being restarted by its
// supervisor), then waits until it answers.
func (mc *RabbitMQCluster) startNode(ctx context.Context, name string) error {
	sup := mc.p.Stack().Supervisor()
	info, err := sup.Process(ctx, name)
	if err != nil {
		return err
	}
	switch info.State {
	case "RUNNING", "STARTING", "BACKOFF":
	default:
		if err := sup.Start(ctx, name, false); err != nil {
			return err
		}
	}
	return mc.p.WaitHealthy(ctx, name)
}

// each runs f on the program of every node of nodes, concurrently, within
// startBound.
func (mc *RabbitMQCluster) each(nodes []int, f func(ctx context.Context, name string) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), startBound())
	defer cancel()
	errs := make([]error, len(nodes))
	var wg sync.WaitGroup
	for k, i := range nodes {
		wg.Go(func() { errs[k] = f(ctx, mc.c.Nodes[i].Program().Name) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// PatroniREST sends one request to the Patroni REST API at addr: HTTPS
// with cfg (plain HTTP when cfg is nil), a JSON body, basic auth when user
// is set, no connection kept; it returns the answer's status and body.
func PatroniREST(ctx context.Context, cfg *tls.Config, addr, method, path, body, user, password string) (int, string, error) {
	scheme := "https://"
	if cfg == nil {
		scheme = "http://"
	}
	req, err := http.NewRequestWithContext(ctx, method, scheme+addr+path, strings.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Content-Type", "application/json")
	if user != "" {
		req.SetBasicAuth(user, password)
	}
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg, DisableKeepAlives: true}}
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(answer), err
}
