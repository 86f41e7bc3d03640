package postgres_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/kvstack/kvstack/internal/kv"
	"github.com/kvstack/kvstack/internal/postgres"
	"github.com/kvstack/kvstack/internal/postgres/pgtest"
)

// TestDisruptivePrimaryFailover: the store on the multi-host DATABASE_URL
// (target_session_attrs=read-write) of a primary and its synchronous
// standby, each run by Patroni, writing all along while the primary's
// machine is lost (Patroni and postgres killed -9) and Patroni promotes the
// standby, finds the new primary by itself — no new setting, no new pool —
// and every batch it saw committed before the kill is there. The cluster
// is private to this package, never the shared server.
func TestDisruptivePrimaryFailover(t *testing.T) {
	t.Setenv("DATABASE_URL", privatePair.URL(t))
	pool := pgtest.MustPool(t)
	store := postgres.NewStore(pool)
	ports := func() (port int) {
		t.Helper()
		if err := pool.QueryRow(t.Context(), "SELECT inet_server_port()").Scan(&port); err != nil {
			t.Fatal(err)
		}
		return port
	}
	before := ports()

	w := &writer{store: store}
	ctx, stop := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); w.run(ctx) }()
	eventuallyTrue(t, 10*time.Second, "100 batches committed before the kill", func() bool { return w.count() >= 100 })

	primary, killed := privatePair.Failover(t)
	eventuallyTrue(t, 30*time.Second, "a batch committed on the new primary", func() bool { return w.firstAfter(killed) != 0 })
	stop()
	<-done
	t.Logf("loss of the primary to the first commit on %s: %s (%d batches committed, %d failed)",
		primary.Program().Name, w.firstAfter(killed).Round(time.Millisecond), w.count(), w.failed)

	if after := ports(); after == before || after != primary.Port {
		t.Fatalf("the pool's sessions are on port %d, before the failover %d; want the new primary's %d", after, before, primary.Port)
	}
	for _, op := range w.committed {
		e, err := store.Get(t.Context(), op.Key)
		if err != nil || !sameEntry(e, op.Entry()) {
			t.Fatalf("committed %q before the failover; the new primary holds %+v (%v)", op.Key, e, err)
		}
	}
}

// writer applies one-op batches one after the other, keeping those that
// committed and the time of each commit.
type writer struct {
	store     *postgres.Store
	mu        sync.Mutex
	committed []kv.Op
	at        []time.Time
	failed    int
}

func (w *writer) run(ctx context.Context) {
	for i := 0; ctx.Err() == nil; i++ {
		op := put(fmt.Sprintf("k%05d", i), "v", kv.NewVersion(time.Now()))
		_, err := w.store.ApplyBatch(ctx, []kv.Op{op})
		w.mu.Lock()
		if err == nil {
			w.committed, w.at = append(w.committed, op), append(w.at, time.Now())
		} else {
			w.failed++
		}
		w.mu.Unlock()
		if err != nil {
			time.Sleep(10 * time.Millisecond) // the consumer's retry pause, shortened
		}
	}
}

func (w *writer) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.committed)
}

// firstAfter is how long after t the first commit came (0: none yet).
func (w *writer) firstAfter(t time.Time) time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, at := range w.at {
		if at.After(t) {
			return at.Sub(t)
		}
	}
	return 0
}

func eventuallyTrue(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %s, still not %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
