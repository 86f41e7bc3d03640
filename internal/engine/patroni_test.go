package engine_test

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/kvstack/kvstack/internal/engine"
	"github.com/kvstack/kvstack/internal/supervisor"
)

// A cluster's etcd starts first, then its nodes one after the other (the
// first runs initdb, the next copies it), and the URL the applications
// use names every node.
func TestPatroniDefinition(t *testing.T) {
	pc := engine.NewPatroni("kv", &engine.Etcd{Port: 25000, PeerPort: 25003, Dir: "/x/etcd"},
		&engine.PatroniNode{Name: "pg1", Port: 25001, RestPort: 25011, Dir: "/x/pg1"},
		&engine.PatroniNode{Name: "pg2", Port: 25002, RestPort: 25012, Dir: "/x/pg2"})
	var prio []int
	for _, e := range pc.Engines() {
		prio = append(prio, e.Program().Priority)
	}
	if len(prio) != 3 || prio[0] != 1 || prio[1] != 2 || prio[2] != 3 {
		t.Errorf("priorities %v; want etcd, then each node after the one before", prio)
	}
	want := "postgres://kv:pw@127.0.0.1:25001,127.0.0.1:25002/kvdb?sslmode=disable&target_session_attrs=read-write"
	if got := pc.DatabaseURL("kv", "pw", "kvdb"); got != want {
		t.Errorf("DatabaseURL = %s, want %s", got, want)
	}
	// Init writes the node's patroni.yml and its bootstrap SQL, with the
	// cluster's parameters.
	dir := t.TempDir()
	pc.Nodes[0].Dir = dir
	pc.Bootstrap = []string{"CREATE ROLE kv LOGIN"}
	pc.Parameters = map[string]any{"archive_mode": "on", "max_connections": 300}
	if err := pc.Nodes[0].Init(context.Background()); err != nil {
		t.Fatal(err)
	}
	conf, err := os.ReadFile(filepath.Join(dir, "patroni.yml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"archive_mode: \"on\"", "max_connections: 300", "synchronous_mode: true", "ttl: 10", "post_bootstrap: " + filepath.Join(dir, "post_bootstrap.sh"), "hosts: 127.0.0.1:25000"} {
		if !strings.Contains(string(conf), want) {
			t.Errorf("patroni.yml has no %q:\n%s", want, conf)
		}
	}
	if sql, err := os.ReadFile(filepath.Join(dir, "bootstrap.sql")); err != nil || string(sql) != "CREATE ROLE kv LOGIN;\n" {
		t.Errorf("bootstrap.sql %q, %v", sql, err)
	}
	// With an archive, the cluster archives (in the DCS) and each node
	// pushes its own data directory's WAL, through a socket in its Dir,
	// where pgBackRest reaches it; pgbackrest.conf names every node.
	pc.Archive = &engine.PgBackRest{Stanza: "kv", Dir: filepath.Join(dir, "backrest"), ArchiveTimeout: 7 * time.Second}
	pc.Nodes[1].Dir = filepath.Join(dir, "pg2")
	if err := pc.Nodes[0].Init(context.Background()); err != nil {
		t.Fatal(err)
	}
	conf, err = os.ReadFile(filepath.Join(dir, "patroni.yml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"archive_mode: \"on\"", "archive_timeout: 7",
		"archive_command: pgbackrest --config=" + pc.Archive.ConfPath() + " --stanza=kv --pg1-path=" + filepath.Join(dir, "data") + " archive-push %p",
		"unix_socket_directories: " + dir} {
		if !strings.Contains(string(conf), want) {
			t.Errorf("patroni.yml has no %q:\n%s", want, conf)
		}
	}
	if b, err := os.ReadFile(pc.Archive.ConfPath()); err != nil || !strings.Contains(string(b), "pg1-path="+filepath.Join(dir, "data")+"\npg1-port=25001\n") ||
		!strings.Contains(string(b), "pg2-path="+filepath.Join(dir, "pg2", "data")+"\npg2-port=25002\n") {
		t.Errorf("pgbackrest.conf names not both nodes (%v):\n%s", err, b)
	}
	pc.TTL, pc.LoopWait, pc.RetryTimeout = 5, 1, 3
	if err := pc.Nodes[0].Init(context.Background()); err == nil || !strings.Contains(err.Error(), "ttl") {
		t.Errorf("loop_wait 1 + 2 × retry_timeout 3 > ttl 5 accepted: %v", err)
	}
}

// The cluster on real Patroni, etcd and PostgreSQL: the bootstrap SQL ran
// on the first primary, the second node is its synchronous standby, and
// through the multi-host URL every committed row survives both faults of
// the HA campaign: the primary's postgres killed (Patroni restarts it) and
// the primary's node lost (Patroni and postgres killed, kept down: the
// standby is promoted once the leader key expires).
func TestPatroniFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd and two Patroni nodes; not run with -short (make test runs it)")
	}
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), engine.AllowForLoad(5*time.Minute))
	defer cancel()
	started := time.Now()
	pc, p := startPatroni(ctx, t, "kvengine-patroni-", nil)
	if err := pc.WaitPrimary(ctx, "kv", "kv", "kvdb", 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	waitSynchronous(ctx, t, pc)
	t.Logf("etcd and two nodes up, synchronous, in %s", time.Since(started).Round(100*time.Millisecond))
	db := connect(ctx, t, pc.DatabaseURL("kv", "kv", "kvdb"))
	exec(ctx, t, db, "CREATE TABLE rows (n int PRIMARY KEY)")

	n := 0
	// insert commits rows until stop, reconnecting through the URL when
	// the session breaks; it returns every row acknowledged and the
	// longest time without a commit.
	insert := func(stop <-chan struct{}) (acked []int, gap time.Duration) {
		conn := db
		last := time.Now()
		for {
			select {
			case <-stop:
				return acked, gap
			default:
			}
			if conn == nil {
				c, err := pgx.Connect(ctx, pc.DatabaseURL("kv", "kv", "kvdb"))
				if err != nil {
					time.Sleep(50 * time.Millisecond)
					continue
				}
				conn = c
			}
			n++
			cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			_, err := conn.Exec(cctx, "INSERT INTO rows VALUES ($1)", n)
			cancel()
			if err != nil {
				conn.Close(ctx)
				conn = nil
				time.Sleep(50 * time.Millisecond)
				continue
			}
			acked = append(acked, n)
			gap = max(gap, time.Since(last))
			last = time.Now()
		}
	}
	var all []int
	fault := func(name string, kill func(primary *engine.PatroniNode) (after func())) {
		primary, err := pc.Primary(ctx)
		if err != nil {
			t.Fatal(err)
		}
		stop := make(chan struct{})
		done := make(chan []int, 1)
		var gap time.Duration
		go func() { acked, g := insert(stop); gap = g; done <- acked }()
		time.Sleep(time.Second)
		killed := time.Now()
		after := kill(primary)
		var firstCommit time.Duration
		for firstCommit == 0 && time.Since(killed) < time.Minute {
			if c, err := pgx.Connect(ctx, pc.DatabaseURL("kv", "kv", "kvdb")); err == nil {
				if _, err := c.Exec(ctx, "SELECT 1"); err == nil {
					firstCommit = time.Since(killed)
				}
				c.Close(ctx)
			}
			time.Sleep(50 * time.Millisecond)
		}
		time.Sleep(time.Second)
		close(stop)
		acked := <-done
		db = nil
		now, _ := pc.Primary(ctx)
		t.Logf("%s: %s was the primary, now %v; a read-write session %s after the kill, longest gap between commits %s, %d rows acked",
			name, primary.Name, nodeName(now), firstCommit.Round(10*time.Millisecond), gap.Round(10*time.Millisecond), len(acked))
		if firstCommit == 0 {
			t.Fatalf("%s: no read-write session within a minute of the kill", name)
		}
		if after != nil {
			after()
		}
		waitSynchronous(ctx, t, pc)
		all = append(all, acked...)
	}
	fault("postgres killed", func(primary *engine.PatroniNode) func() {
		if _, err := primary.KillPostgres(); err != nil {
			t.Fatal(err)
		}
		return nil
	})
	fault("node lost", func(primary *engine.PatroniNode) func() {
		if err := primary.Lose(ctx, p.Stack().Supervisor()); err != nil {
			t.Fatal(err)
		}
		// A lost machine stays lost: nothing may answer on its port until
		// it comes back (a Patroni restarted by its supervisor would start
		// its PostgreSQL again, and keep the leader key).
		stopWatch := watchRefused(primary.Port)
		return func() {
			if at := stopWatch(); at > 0 {
				t.Errorf("the lost node %s's PostgreSQL answered again %s after it was lost", primary.Name, at.Round(10*time.Millisecond))
			}
			// The lost node comes back, and Patroni rewinds it into the
			// new primary's standby.
			if err := p.Start(ctx, primary.Name); err != nil {
				t.Fatal(err)
			}
		}
	})
	db = connect(ctx, t, pc.DatabaseURL("kv", "kv", "kvdb"))
	have := map[int]bool{}
	rows, err := db.Query(ctx, "SELECT n FROM rows")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var n int
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		have[n] = true
	}
	lost := 0
	for _, n := range all {
		if !have[n] {
			lost++
		}
	}
	if lost > 0 || len(all) == 0 {
		t.Errorf("%d of %d acknowledged rows lost", lost, len(all))
	}
}

// watchRefused dials 127.0.0.1:port every 20 ms until stop is called;
// stop returns how long after the start of the watch a connection was
// first accepted (0 when none was).
func watchRefused(port int) (stop func() time.Duration) {
	done := make(chan struct{})
	result := make(chan time.Duration, 1)
	go func() {
		start := time.Now()
		for {
			select {
			case <-done:
				result <- 0
				return
			case <-time.After(20 * time.Millisecond):
			}
			if c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), time.Second); err == nil {
				c.Close()
				at := time.Since(start)
				<-done
				result <- at
				return
			}
		}
	}()
	return func() time.Duration { close(done); return <-result }
}

// startPatroni starts etcd and two Patroni nodes pg1 and pg2 (cluster
// kvtest, with role kv and database kvdb) in a directory of its own,
// configure changing the cluster first (nil: nothing), and stops them
// when the test ends, with the nodes' logs if it failed. Not t.TempDir:
// its parent is private to root, and etcd and Patroni run as their own
// users.
func startPatroni(ctx context.Context, t *testing.T, prefix string, configure func(dir string, pc *engine.Patroni)) (*engine.Patroni, *engine.Private) {
	t.Helper()
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		t.Fatal(err)
	}
	ports, err := engine.FreePorts(6)
	if err != nil {
		t.Fatal(err)
	}
	pc := engine.NewPatroni("kvtest", &engine.Etcd{Port: ports[0], PeerPort: ports[1], Dir: filepath.Join(dir, "etcd")},
		&engine.PatroniNode{Name: "pg1", Port: ports[2], RestPort: ports[3], Dir: filepath.Join(dir, "pg1")},
		&engine.PatroniNode{Name: "pg2", Port: ports[4], RestPort: ports[5], Dir: filepath.Join(dir, "pg2")})
	pc.Bootstrap = []string{"CREATE ROLE kv LOGIN PASSWORD 'kv'", "CREATE DATABASE kvdb OWNER kv"}
	if configure != nil {
		configure(dir, pc)
	}
	p, err := engine.Start(ctx, dir, testLog{t}, pc.Engines()...)
	if err != nil {
		t.Fatalf("starting etcd and two Patroni nodes (needs supervisor, postgresql, patroni, etcd-server, python3-etcd, pgbackrest: make packages): %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, n := range pc.Nodes {
				t.Logf("%s's log ends:\n%s", n.Name, supervisor.Tail(n.Program().Log))
			}
		}
		if err := p.Close(context.Background()); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return pc, p
}

func nodeName(n *engine.PatroniNode) string {
	if n == nil {
		return "none"
	}
	return n.Name
}

// waitSynchronous waits until Patroni reports a leader and a synchronous
// standby caught up.
func waitSynchronous(ctx context.Context, t *testing.T, pc *engine.Patroni) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		err := pc.Synchronous(ctx)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func connect(ctx context.Context, t *testing.T, url string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func exec(ctx context.Context, t *testing.T, conn *pgx.Conn, sql string) {
	t.Helper()
	if _, err := conn.Exec(ctx, sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}
