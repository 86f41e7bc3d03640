package engine

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/kvstack/kvstack/internal/supervisor"
)

// PostgresPair is a PostgreSQL primary and its synchronous streaming
// standby, two nodes under one supervisor (issue 12). Which node is the
// primary lives in their data directories (a standby has standby.signal),
// not here: ask Primary. What a failover manager (Patroni, CloudNativePG)
// does in production, the harness does through Promote and Rejoin.
//
// Synchronous replication: the primary's synchronous_standby_names names
// the standby, so a COMMIT returns once the standby has flushed it, and a
// commit the consumer saw survives a promotion. While the standby is gone
// the primary would make every commit wait; Reconcile then clears
// synchronous_standby_names (degraded: commits are on one node), and sets
// it back once the standby streams again — Patroni's synchronous_mode,
// non-strict. A pair that is degraded refuses Promote: its standby may lack
// commits. That state is a file beside the standby's data directory
// (unsynchronized), so that it outlives the process that keeps the pair.
type PostgresPair struct {
	Nodes [2]*Postgres

	mu sync.Mutex // one Promote or Reconcile at a time
}

// ErrDegraded is Promote's refusal while the standby may lack commits.
var ErrDegraded = errors.New("postgres pair degraded: the standby may lack commits, not promoting it")

// NewPostgresPair makes a and b one replication group: a is made first
// (initdb, priority 1 unless set) and b, one priority later, is made from
// it as its standby (pg_basebackup) once a answers.
func NewPostgresPair(a, b *Postgres) *PostgresPair {
	if a.Priority == 0 {
		a.Priority = 1
	}
	if b.Priority <= a.Priority {
		b.Priority = a.Priority + 1
	}
	a.Peers, b.Peers = []*Postgres{b}, []*Postgres{a}
	return &PostgresPair{Nodes: [2]*Postgres{a, b}}
}

// Engines lists both nodes, for Start or a stack's programs.
func (pp *PostgresPair) Engines() []Engine { return []Engine{pp.Nodes[0], pp.Nodes[1]} }

// Other is the node that is not n.
func (pp *PostgresPair) Other(n *Postgres) *Postgres {
	if n == pp.Nodes[0] {
		return pp.Nodes[1]
	}
	return pp.Nodes[0]
}

// Primary is the node that answers as a primary; an error when none does,
// or when both do (two timelines: the harness fences before it promotes, so
// this would be a bug).
func (pp *PostgresPair) Primary(ctx context.Context) (*Postgres, error) {
	var found []*Postgres
	var errs []error
	answers := pp.ask(ctx)
	for range pp.Nodes {
		a := <-answers
		if a.err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", a.n.name(), a.err))
		} else if a.primary {
			found = append(found, a.n)
		}
	}
	switch len(found) {
	case 1:
		return found[0], nil
	case 2:
		return nil, errors.New("postgres pair: both nodes answer as primary")
	}
	return nil, fmt.Errorf("postgres pair: no primary answers: %w", errors.Join(errs...))
}

// role is a node's answer to IsPrimary.
type role struct {
	n       *Postgres
	primary bool
	err     error
}

// ask asks both nodes at once whether they are the primary; the answers
// come in as they arrive (a node being restarted may take seconds). The
// channel holds both, so the askers never block.
func (pp *PostgresPair) ask(ctx context.Context) <-chan role {
	answers := make(chan role, len(pp.Nodes))
	for _, n := range pp.Nodes {
		go func() {
			primary, err := n.IsPrimary(ctx)
			answers <- role{n, primary, err}
		}()
	}
	return answers
}

// DatabaseURL is the multi-host URL the API and consumer use: pgx tries
// both nodes and keeps the one that accepts writes
// (target_session_attrs=read-write), so a promotion needs no new setting.
func (pp *PostgresPair) DatabaseURL(user, password, db string) string {
	u, _ := url.Parse(pp.Nodes[0].URL(user, password, db))
	u.Host += "," + addr(pp.Nodes[1].Port)
	q := u.Query()
	q.Set("target_session_attrs", "read-write")
	u.RawQuery = q.Encode()
	return u.String()
}

// CreateDatabase makes a role and a database on the primary (the standby
// replays them).
func (pp *PostgresPair) CreateDatabase(ctx context.Context, db, owner, password string) error {
	primary, err := pp.Primary(ctx)
	if err != nil {
		return err
	}
	return primary.CreateDatabase(ctx, db, owner, password)
}

// Promote makes the standby the primary, as a failover manager does when
// the primary is lost: the old primary is fenced first (stopped under sup,
// so that its supervisor cannot bring it back as a second primary, and
// killed), then the standby is promoted (pg_promote) with
// synchronous_standby_names cleared, since it has no standby yet. It
// returns the new primary. Every commit the old primary acknowledged is on
// it (synchronous replication); WAL the old one wrote but never
// acknowledged may not be, which is why the old one comes back only as a
// fresh copy (Rejoin).
func (pp *PostgresPair) Promote(ctx context.Context, sup *supervisor.Supervisor) (*Postgres, error) {
	pp.mu.Lock()
	defer pp.mu.Unlock()
	standby, err := pp.standby(ctx)
	if err != nil {
		return nil, err
	}
	if _, degraded := standby.unsynchronized(); degraded {
		return nil, ErrDegraded
	}
	old := pp.Other(standby)
	if err := fence(ctx, sup, old.name()); err != nil {
		return nil, fmt.Errorf("fence the old primary %s: %w", old.name(), err)
	}
	err = standby.query(ctx, func(conn *pgx.Conn) error {
		var promoted bool
		if err := conn.QueryRow(ctx, "SELECT pg_promote(true, 60)").Scan(&promoted); err != nil || !promoted {
			return fmt.Errorf("pg_promote: %t, %w", promoted, err)
		}
		return setSynchronous(ctx, conn, false)
	})
	if err != nil {
		return nil, fmt.Errorf("promote %s: %w", standby.name(), err)
	}
	return standby, old.markUnsynchronized("")
}

// fence stops a node at once and for good: its supervisor is told to stop
// it (so does not restart it), and its process group gets SIGKILL, whatever
// it was doing. A stop signal alone can be lost on a postmaster that the
// supervisor is just restarting after a crash, and then the stop waits its
// full timeout.
func fence(ctx context.Context, sup *supervisor.Supervisor, name string) error {
	stopped := make(chan error, 1)
	go func() { stopped <- sup.Stop(ctx, name) }()
	for {
		if pid, err := sup.Pid(ctx, name); err == nil && pid > 0 {
			_ = syscall.Kill(-pid, syscall.SIGKILL)
		}
		select {
		case err := <-stopped:
			return err
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// standby is the node that answers as a standby (in recovery), the first
// to answer so: the old primary, being restarted by its supervisor after a
// crash, may take seconds to answer at all.
func (pp *PostgresPair) standby(ctx context.Context) (*Postgres, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var errs []error
	answers := pp.ask(ctx)
	for range pp.Nodes {
		a := <-answers
		switch {
		case a.err != nil:
			errs = append(errs, fmt.Errorf("%s: %w", a.n.name(), a.err))
		case a.primary:
			errs = append(errs, fmt.Errorf("%s: a primary", a.n.name()))
		default:
			return a.n, nil
		}
	}
	return nil, fmt.Errorf("postgres pair: no standby answers: %w", errors.Join(errs...))
}

// setSynchronous sets synchronous_standby_names back to postgresql.conf's
// (the group's nodes), or clears it, and reloads: commits waiting on a
// standby that is gone are released.
func setSynchronous(ctx context.Context, conn *pgx.Conn, on bool) error {
	stmt := "ALTER SYSTEM SET synchronous_standby_names = ''"
	if on {
		stmt = "ALTER SYSTEM RESET synchronous_standby_names"
	}
	if _, err := conn.Exec(ctx, stmt); err != nil {
		return err
	}
	_, err := conn.Exec(ctx, "SELECT pg_reload_conf()")
	return err
}

// Rejoin makes node, the old primary, a standby of the current primary:
// its data directory is replaced by a fresh pg_basebackup (what pg_rewind
// does for a large database, a copy does for this one), it is started under
// sup, and it returns once Reconcile finds the pair synchronous again.
func (pp *PostgresPair) Rejoin(ctx context.Context, sup *supervisor.Supervisor, node *Postgres) error {
	primary, err := pp.Primary(ctx)
	if err != nil {
		return err
	}
	if primary == node {
		return fmt.Errorf("rejoin %s: it is the primary", node.name())
	}
	if err := sup.Stop(ctx, node.name()); err != nil {
		return err
	}
	if err := os.RemoveAll(node.data()); err != nil {
		return err
	}
	if err := node.Init(ctx); err != nil {
		return fmt.Errorf("rejoin %s: %w", node.name(), err)
	}
	if err := sup.Start(ctx, node.name(), true); err != nil {
		return err
	}
	for {
		st, err := pp.Reconcile(ctx)
		if err == nil && st.Synchronous {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("rejoin %s: not a synchronous standby of %s (%+v, %v): %w", node.name(), primary.name(), st, err, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Replication is the pair's state as Reconcile found it.
type Replication struct {
	Primary, Standby string // node names
	Streaming        bool   // the standby streams from the primary
	Synchronous      bool   // and every commit since it came back is on it
}

// Reconcile keeps commits from waiting on a standby that is gone: on the
// primary it clears synchronous_standby_names while the standby does not
// stream, and sets it back once it does. The pair counts as synchronous
// again once the standby has flushed the WAL written up to that moment. A
// keeper calls it every second or so.
func (pp *PostgresPair) Reconcile(ctx context.Context) (Replication, error) {
	pp.mu.Lock()
	defer pp.mu.Unlock()
	primary, err := pp.Primary(ctx)
	if err != nil {
		return Replication{}, err
	}
	standby := pp.Other(primary)
	st := Replication{Primary: primary.name(), Standby: standby.name()}
	resyncLSN, degraded := standby.unsynchronized()
	err = primary.query(ctx, func(conn *pgx.Conn) error {
		var names, lsn string
		var caughtUp bool
		err := conn.QueryRow(ctx, `SELECT current_setting('synchronous_standby_names'), pg_current_wal_flush_lsn()::text,
			coalesce((SELECT state = 'streaming' FROM pg_stat_replication WHERE application_name = $1), false),
			coalesce((SELECT flush_lsn >= $2::pg_lsn FROM pg_stat_replication WHERE application_name = $1), false)`,
			st.Standby, or0(resyncLSN)).Scan(&names, &lsn, &st.Streaming, &caughtUp)
		if err != nil {
			return err
		}
		switch {
		case !st.Streaming && (names != "" || !degraded):
			if err := standby.markUnsynchronized(""); err != nil {
				return err
			}
			return setSynchronous(ctx, conn, false)
		case st.Streaming && (names == "" || degraded && resyncLSN == ""):
			// Synchronous from now on: caught up once it has flushed lsn.
			if err := standby.markUnsynchronized(lsn); err != nil {
				return err
			}
			return setSynchronous(ctx, conn, true)
		case st.Streaming && degraded && resyncLSN != "" && caughtUp:
			degraded = false
			return standby.markSynchronized()
		}
		return nil
	})
	st.Synchronous = err == nil && st.Streaming && !degraded
	return st, err
}

func or0(lsn string) string {
	if lsn == "" {
		return "0/0"
	}
	return lsn
}

// unsynchronizedFile marks a standby that may lack commits: it holds the
// primary's WAL position the standby must have flushed to be synchronous
// again, or nothing while it does not stream.
func (p *Postgres) unsynchronizedFile() string { return filepath.Join(p.Dir, "unsynchronized") }

func (p *Postgres) unsynchronized() (resyncLSN string, marked bool) {
	b, err := os.ReadFile(p.unsynchronizedFile())
	return strings.TrimSpace(string(b)), err == nil
}

func (p *Postgres) markUnsynchronized(resyncLSN string) error {
	if err := os.MkdirAll(p.Dir, 0o755); err != nil {
		return err
	}
	return os.WriteFile(p.unsynchronizedFile(), []byte(resyncLSN+"\n"), 0o644)
}

func (p *Postgres) markSynchronized() error {
	err := os.Remove(p.unsynchronizedFile())
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}
