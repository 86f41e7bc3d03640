package engine_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/kvstack/kvstack/internal/engine"
)

// A pair's nodes start in order (the standby after the primary it copies),
// and the URL the applications use names both.
func TestPostgresPairDefinition(t *testing.T) {
	pair := engine.NewPostgresPair(&engine.Postgres{Name: "pg1", Port: 25001, Dir: "/x/pg1"}, &engine.Postgres{Name: "pg2", Port: 25002, Dir: "/x/pg2"})
	if a, b := pair.Nodes[0].Program().Priority, pair.Nodes[1].Program().Priority; a != 1 || b != 2 {
		t.Errorf("priorities %d, %d; want the standby after the primary", a, b)
	}
	want := "postgres://kv:pw@127.0.0.1:25001,127.0.0.1:25002/kvdb?sslmode=disable&target_session_attrs=read-write"
	if got := pair.DatabaseURL("kv", "pw", "kvdb"); got != want {
		t.Errorf("DatabaseURL = %s, want %s", got, want)
	}
	if pair.Other(pair.Nodes[0]) != pair.Nodes[1] || pair.Other(pair.Nodes[1]) != pair.Nodes[0] {
		t.Error("Other")
	}
}

// The pair on real PostgreSQL: the standby is made from the running primary
// and is synchronous (a commit waits for it); with the standby gone,
// Reconcile stops commits from waiting and Promote refuses until it is back
// and caught up; kill -9 of the primary and Promote leave every committed
// row on the new primary, the old one fenced; Rejoin makes it the standby.
func TestPostgresPairFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two PostgreSQL nodes; not run with -short (make test runs it)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	pair, p := startPair(ctx, t)
	sup := p.Stack().Supervisor()
	pg1, pg2 := pair.Nodes[0], pair.Nodes[1]
	requireState(ctx, t, pair, engine.Replication{Primary: "pg1", Standby: "pg2", Streaming: true, Synchronous: true})
	db := connect(ctx, t, pair.DatabaseURL("postgres", "", "postgres"))
	exec(ctx, t, db, "CREATE TABLE rows (n int PRIMARY KEY)")
	exec(ctx, t, db, "INSERT INTO rows SELECT generate_series(1, 100)")

	t.Run("standby gone: degraded, not blocked", func(t *testing.T) {
		if err := p.Stop(ctx, "pg2"); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { _, err := db.Exec(ctx, "INSERT INTO rows VALUES (101)"); done <- err }()
		select {
		case err := <-done:
			t.Fatalf("a commit returned (%v) with the synchronous standby stopped: replication is not synchronous", err)
		case <-time.After(time.Second):
		}
		st, err := pair.Reconcile(ctx)
		if err != nil || st.Synchronous || st.Streaming {
			t.Fatalf("Reconcile with the standby stopped = %+v, %v", st, err)
		}
		if err := <-done; err != nil {
			t.Fatalf("the waiting commit once degraded: %v", err)
		}
		// Back, streaming, but not known to hold the commits made meanwhile.
		if err := p.Start(ctx, "pg2"); err != nil {
			t.Fatal(err)
		}
		if _, err := pair.Promote(ctx, sup); !errors.Is(err, engine.ErrDegraded) {
			t.Fatalf("Promote of a degraded pair = %v, want ErrDegraded", err)
		}
		requireState(ctx, t, pair, engine.Replication{Primary: "pg1", Standby: "pg2", Streaming: true, Synchronous: true})
	})

	t.Run("kill -9 the primary, promote", func(t *testing.T) {
		exec(ctx, t, db, "INSERT INTO rows SELECT generate_series(102, 200)")
		if _, err := p.Kill(ctx, "pg1"); err != nil {
			t.Fatal(err)
		}
		killed := time.Now()
		primary, err := pair.Promote(ctx, sup)
		if err != nil || primary != pg2 {
			t.Fatalf("Promote = %v, %v; want pg2", primary, err)
		}
		promoted := time.Since(killed)
		db2 := connect(ctx, t, pair.DatabaseURL("postgres", "", "postgres"))
		exec(ctx, t, db2, "INSERT INTO rows VALUES (201)")
		t.Logf("kill -9 to Promote's return: %s; to the first commit on the new primary: %s",
			promoted.Round(time.Millisecond), time.Since(killed).Round(time.Millisecond))
		var n int
		if err := db2.QueryRow(ctx, "SELECT count(*) FROM rows").Scan(&n); err != nil || n != 201 {
			t.Fatalf("the new primary holds %d rows (%v), want all 201 committed", n, err)
		}
		if pid, _ := p.Pid(ctx, "pg1"); pid != 0 {
			t.Fatalf("the old primary runs again (pid %d): it must stay fenced", pid)
		}
	})

	t.Run("rejoin the old primary", func(t *testing.T) {
		began := time.Now()
		if err := pair.Rejoin(ctx, sup, pg1); err != nil {
			t.Fatal(err)
		}
		t.Logf("the old primary a synchronous standby again %s after Rejoin began", time.Since(began).Round(10*time.Millisecond))
		requireState(ctx, t, pair, engine.Replication{Primary: "pg2", Standby: "pg1", Streaming: true, Synchronous: true})
		conninfo, err := os.ReadFile(filepath.Join(pg1.Dir, "data", "postgresql.auto.conf"))
		if err != nil || !strings.Contains(string(conninfo), "application_name=pg1") {
			t.Errorf("the rejoined standby's postgresql.auto.conf (%v):\n%s", err, conninfo)
		}
		// And back: a live primary is fenced just the same.
		if primary, err := pair.Promote(ctx, sup); err != nil || primary != pg1 {
			t.Fatalf("Promote of a live pair = %v, %v; want pg1", primary, err)
		}
		if pid, _ := p.Pid(ctx, "pg2"); pid != 0 {
			t.Fatalf("the old primary pg2 runs (pid %d) after Promote", pid)
		}
		exec(ctx, t, connect(ctx, t, pair.DatabaseURL("postgres", "", "postgres")), "INSERT INTO rows VALUES (202)")
	})
}

func startPair(ctx context.Context, t *testing.T) (*engine.PostgresPair, *engine.Private) {
	t.Helper()
	ports, err := engine.FreePorts(2)
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "kvengine-pair-")
	if err != nil {
		t.Fatal(err)
	}
	pair := engine.NewPostgresPair(&engine.Postgres{Name: "pg1", Port: ports[0], Dir: filepath.Join(dir, "pg1")},
		&engine.Postgres{Name: "pg2", Port: ports[1], Dir: filepath.Join(dir, "pg2")})
	started := time.Now()
	p, err := engine.Start(ctx, dir, testLog{t}, pair.Engines()...)
	if err != nil {
		t.Fatalf("starting a PostgreSQL primary and standby (needs supervisor, postgresql: make setup-all): %v", err)
	}
	t.Logf("primary and standby answering %s after the start", time.Since(started).Round(100*time.Millisecond))
	t.Cleanup(func() {
		if err := p.Close(context.Background()); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return pair, p
}

// requireState polls Reconcile (as a keeper does) until it reports want.
func requireState(ctx context.Context, t *testing.T, pair *engine.PostgresPair, want engine.Replication) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		st, err := pair.Reconcile(ctx)
		if err == nil && st == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("pair state %+v (%v), want %+v", st, err, want)
		}
		time.Sleep(50 * time.Millisecond)
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
