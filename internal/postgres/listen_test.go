package postgres_test

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rs/zerolog"

	"github.com/kvstack/kvstack/internal/kv"
	"github.com/kvstack/kvstack/internal/nettest"
	"github.com/kvstack/kvstack/internal/postgres"
	"github.com/kvstack/kvstack/internal/postgres/pgtest"
)

// sink records what a listener hears.
type sink struct {
	mu      sync.Mutex
	applied map[string]kv.Version
	lost    int
	changed chan struct{}
}

func newSink() *sink { return &sink{applied: map[string]kv.Version{}, changed: make(chan struct{}, 1)} }

func (s *sink) Applied(key string, v kv.Version) {
	s.mu.Lock()
	s.applied[key] = v
	s.mu.Unlock()
	s.signal()
}

func (s *sink) Lost() {
	s.mu.Lock()
	s.lost++
	s.mu.Unlock()
	s.signal()
}

func (s *sink) signal() {
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

// await waits, within 10s, until cond holds of what the sink heard.
func (s *sink) await(t *testing.T, what string, cond func(applied map[string]kv.Version, lost int) bool) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		s.mu.Lock()
		ok := cond(s.applied, s.lost)
		s.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-s.changed:
		case <-deadline:
			t.Fatalf("listener: still not %s after 10s", what)
		}
	}
}

// listening starts a listener on url and waits until it listens.
func listening(t *testing.T, url string) (*postgres.Listener, *sink) {
	t.Helper()
	cfg := postgres.DefaultConfig()
	cfg.URL = url
	s := newSink()
	channel, err := postgres.NewStore(pgtest.MustPoolAt(t, url)).NewsChannel(t.Context())
	if err != nil {
		t.Fatalf("NewsChannel: %v", err)
	}
	l, err := postgres.NewListener(cfg, channel, s, zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel))
	if err != nil {
		t.Fatalf("NewListener: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { l.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	s.await(t, "listening", func(_ map[string]kv.Version, lost int) bool { return lost > 0 })
	if !l.Listening() {
		t.Fatal("told the sink it listens, but Listening() is false")
	}
	return l, s
}

func TestListenerHearsAppliedVersionsOnly(t *testing.T) {
	url := pgtest.MustURL(t)
	store := postgres.NewStore(pgtest.MustPoolAt(t, url))
	_, s := listening(t, url)

	old, cur := put("a", "old", ver(1, 1)), put("a", "new", ver(2, 1))
	mustApply(t, store, cur)
	s.await(t, "told of a", func(m map[string]kv.Version, _ int) bool { return m["a"] == cur.Version })

	// Stale and duplicate ops change nothing and tell nothing; the next
	// batch's news comes after theirs would have.
	s.mu.Lock()
	delete(s.applied, "a")
	s.mu.Unlock()
	mustApply(t, store, old)
	mustApply(t, store, cur)
	marker := del("b", ver(3, 1))
	mustApply(t, store, marker)
	s.await(t, "told of b", func(m map[string]kv.Version, _ int) bool { return m["b"] == marker.Version })
	if v, ok := s.applied["a"]; ok {
		t.Errorf("told of a at %v after stale and duplicate ops, want nothing", v)
	}

	// A batch larger than one NOTIFY payload arrives whole.
	var ops []kv.Op
	for i := range 60 {
		ops = append(ops, put(fmt.Sprintf("%02d-%s", i, strings.Repeat("k", 500)), "v", ver(10, byte(i))))
	}
	mustApply(t, store, ops...)
	s.await(t, "told of all 60", func(m map[string]kv.Version, _ int) bool {
		for _, op := range ops {
			if m[op.Key] != op.Version {
				return false
			}
		}
		return true
	})
}

// Each schema has its own channel: a deployment hears only its own news.
func TestListenerHearsOnlyItsSchema(t *testing.T) {
	url := pgtest.MustURL(t)
	_, s := listening(t, url)
	other := postgres.NewStore(pgtest.MustPool(t))
	mustApply(t, other, put("elsewhere", "v", ver(1, 1)))
	mine := postgres.NewStore(pgtest.MustPoolAt(t, url))
	mustApply(t, mine, put("here", "v", ver(1, 1)))
	s.await(t, "told of here", func(m map[string]kv.Version, _ int) bool { return m["here"] == ver(1, 1) })
	if _, ok := s.applied["elsewhere"]; ok {
		t.Error("heard another schema's news")
	}
}

// A listener whose connection is killed listens again by itself, says
// that news may have been lost meanwhile, and hears what follows.
func TestListenerReconnects(t *testing.T) {
	url := pgtest.MustURL(t)
	pool := pgtest.MustPoolAt(t, url)
	store := postgres.NewStore(pool)
	l, s := listening(t, url)

	if n := terminateListener(t, pool); n != 1 {
		t.Fatalf("terminated %d listener backends, want 1", n)
	}
	s.await(t, "listening again", func(_ map[string]kv.Version, lost int) bool { return lost >= 2 })
	if !l.Listening() {
		t.Error("Listening() is false after the reconnect")
	}
	op := put("after", "v", ver(1, 1))
	mustApply(t, store, op)
	s.await(t, "told of after", func(m map[string]kv.Version, _ int) bool { return m["after"] == op.Version })
}

// A listener whose network is cut (the proxy closes its connection and
// refuses new ones, as a dead node would) listens again once the network
// is back, and hears what follows.
func TestListenerReconnectsAfterTheNetworkIsCut(t *testing.T) {
	direct := pgtest.MustURL(t)
	store := postgres.NewStore(pgtest.MustPoolAt(t, direct))
	u, err := url.Parse(direct)
	if err != nil {
		t.Fatal(err)
	}
	proxy := nettest.NewProxy(t, u.Host)
	u.Host = proxy.Addr()
	l, s := listening(t, u.String())

	proxy.Cut()
	deadline := time.Now().Add(10 * time.Second)
	for l.Listening() {
		if time.Now().After(deadline) {
			t.Fatal("Listening() still true 10s after the network was cut")
		}
		time.Sleep(10 * time.Millisecond)
	}
	proxy.Restore()
	s.await(t, "listening again", func(_ map[string]kv.Version, lost int) bool { return lost >= 2 })
	op := put("after-cut", "v", ver(1, 1))
	mustApply(t, store, op)
	s.await(t, "told of after-cut", func(m map[string]kv.Version, _ int) bool { return m["after-cut"] == op.Version })
}

// terminateListener kills the backend of the listener of pool's schema.
func terminateListener(t *testing.T, pool *pgxpool.Pool) int {
	t.Helper()
	var n int
	err := pool.QueryRow(t.Context(), `
		SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE application_name = 'kvstack-listener' AND query ILIKE 'LISTEN "' || (`+postgres.ChannelSQL+`) || '"'`).Scan(&n)
	if err != nil {
		t.Fatalf("terminate the listener: %v", err)
	}
	return n
}

// With several hosts in the URL, the listener skips one that does not
// answer, as the pool does.
func TestListenerFindsALiveHostOfSeveral(t *testing.T) {
	u, err := url.Parse(pgtest.MustURL(t))
	if err != nil {
		t.Fatal(err)
	}
	u.Host = "127.0.0.1:1," + u.Host
	listening(t, u.String())
}
