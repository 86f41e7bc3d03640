package keeper_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/kvstack/kvstack/internal/engine"
	"github.com/kvstack/kvstack/lab/native/keeper"
)

// The keeper, on private PostgreSQL nodes under their own supervisord,
// makes the pair from nothing (initdb, then a standby copied from the
// primary), fails over when the primary is killed (-9: supervisord does not
// restart it), rejoins the old primary as the new one's standby, and a row
// committed before the kill is on the new primary.
func TestKeeperMakesFailsOverAndRejoins(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two PostgreSQL nodes; not run with -short (make test runs it)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	ports, err := engine.FreePorts(2)
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "kvkeeper-test-")
	if err != nil {
		t.Fatal(err)
	}
	pair := engine.NewPostgresPair(
		&engine.Postgres{Name: "pg1", Port: ports[0], Dir: filepath.Join(dir, "pg1")},
		&engine.Postgres{Name: "pg2", Port: ports[1], Dir: filepath.Join(dir, "pg2")})
	p, err := engine.Start(ctx, dir, testLog{t})
	if err != nil {
		t.Fatalf("supervisord for the nodes (make setup-all): %v", err)
	}
	t.Cleanup(func() { _ = p.Close(context.Background()) })
	st := p.Stack()
	for _, n := range pair.Nodes {
		prog := n.Program()
		prog.Manual, prog.NoRestart = true, true // the keeper's, as in the HA topology
		st.Programs = append(st.Programs, prog)
	}
	if _, err := st.Up(ctx); err != nil {
		t.Fatal(err)
	}
	k := &keeper.Keeper{Pair: pair, Sup: st.Supervisor(), Log: testLog{t}, Interval: 200 * time.Millisecond, Grace: 5 * time.Second}
	kctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = k.Run(kctx) }()
	t.Cleanup(func() { stop(); <-done })

	began := time.Now()
	first := waitState(t, ctx, k, "a synchronous pair made from nothing", func(s keeper.State) bool { return s.Synchronous })
	t.Logf("pair made and synchronous in %s: %s", time.Since(began).Round(100*time.Millisecond), first.Line())
	if first.Primary != "pg1" {
		t.Errorf("primary %s, want pg1 (the first node, made with initdb)", first.Primary)
	}
	url := pair.DatabaseURL("postgres", "", "postgres")
	exec(t, ctx, url, "CREATE TABLE kept (v int); INSERT INTO kept VALUES (42)")

	killed, err := p.Kill(ctx, "pg1")
	if err != nil {
		t.Fatal(err)
	}
	began = time.Now()
	waitState(t, ctx, k, "pg2 promoted", func(s keeper.State) bool { return s.Primary == "pg2" && s.Failovers == 1 })
	t.Logf("pg2 primary %s after the kill -9 of pg1 (pid %d)", time.Since(began).Round(10*time.Millisecond), killed)
	exec(t, ctx, url, "INSERT INTO kept VALUES (43)")
	after := waitState(t, ctx, k, "pg1 back as pg2's synchronous standby", func(s keeper.State) bool { return s.Standby == "pg1" && s.Synchronous })
	t.Logf("pg1 rejoined and synchronous %s after the kill: %s", time.Since(began).Round(100*time.Millisecond), after.Line())
	var n int
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM kept").Scan(&n); err != nil || n != 2 {
		t.Errorf("rows after the failover: %d (%v), want the one committed before it and the one after", n, err)
	}
}

func waitState(t *testing.T, ctx context.Context, k *keeper.Keeper, what string, ok func(keeper.State) bool) keeper.State {
	t.Helper()
	for {
		st := k.State()
		if ok(st) {
			return st
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s: not within the test's time; the keeper's last state: %+v", what, st)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func exec(t *testing.T, ctx context.Context, url, sql string) {
	t.Helper()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connect %s: %v", url, err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

type testLog struct{ t *testing.T }

func (l testLog) Write(b []byte) (int, error) {
	l.t.Logf("%s", b)
	return len(b), nil
}
