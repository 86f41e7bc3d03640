package kv_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/kvstack/kvstack/internal/kv"
	"github.com/kvstack/kvstack/internal/notify"
)

// world is the service's dependencies, in memory: a store and cache the
// test changes as a consumer would, and a publisher that hands each
// accepted op to the test.
type world struct {
	mu        sync.Mutex
	store     map[string]kv.Entry
	cache     map[string]kv.Entry
	storeGets int
	fillErr   error // what the cache's Fill fails with, when set
	published chan kv.Op
	pubErr    error
	reg       *notify.Registry
	svc       *kv.Service
}

func newWorld(t *testing.T, cfg kv.WaitConfig) *world {
	w := &world{
		store: map[string]kv.Entry{}, cache: map[string]kv.Entry{},
		published: make(chan kv.Op, 16), reg: notify.NewRegistry(cfg.MaxWaiters, cfg.MaxWaitersPerClient),
	}
	w.svc = kv.NewService(storeOf{w}, cacheOf{w}, pubOf{w}, kv.DefaultLimits(), zerolog.New(zerolog.NewTestWriter(t)), kv.WithWaiters(w.reg, cfg))
	return w
}

type storeOf struct{ w *world }

func (s storeOf) Get(_ context.Context, key string) (kv.Entry, error) {
	s.w.mu.Lock()
	defer s.w.mu.Unlock()
	s.w.storeGets++
	e, ok := s.w.store[key]
	if !ok {
		return kv.Entry{}, kv.ErrNotFound
	}
	return e, nil
}

func (storeOf) List(context.Context, string, string, int) ([]kv.Entry, error) { return nil, nil }

type cacheOf struct{ w *world }

func (c cacheOf) Get(_ context.Context, key string) (kv.Entry, error) {
	c.w.mu.Lock()
	defer c.w.mu.Unlock()
	e, ok := c.w.cache[key]
	if !ok {
		return kv.Entry{}, kv.ErrCacheMiss
	}
	return e, nil
}

func (c cacheOf) Fill(_ context.Context, e kv.Entry) (bool, error) {
	c.w.mu.Lock()
	defer c.w.mu.Unlock()
	if c.w.fillErr != nil {
		return false, c.w.fillErr
	}
	if old, ok := c.w.cache[e.Key]; ok && !e.Version.Newer(old.Version) {
		return false, nil
	}
	c.w.cache[e.Key] = e
	return true, nil
}

type pubOf struct{ w *world }

func (p pubOf) Publish(_ context.Context, op kv.Op) error {
	if p.w.pubErr != nil {
		return p.w.pubErr
	}
	p.w.published <- op
	return nil
}

// apply stores op as the consumer would, leaving the cache as it was (the
// consumer updates it after the news); notify says whether the news is
// sent too.
func (w *world) apply(op kv.Op, notify bool) {
	w.mu.Lock()
	w.store[op.Key] = op.Entry()
	w.mu.Unlock()
	if notify {
		w.reg.Applied(op.Key, op.Version)
	}
}

// cached is the cache's entry for key (ok false: none).
func (w *world) cached(key string) (kv.Entry, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	e, ok := w.cache[key]
	return e, ok
}

func (w *world) reads() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.storeGets
}

// waitingFor polls until n requests wait.
func (w *world) waitingFor(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for w.reg.Len() != n {
		if time.Now().After(deadline) {
			t.Fatalf("waiters: %d, want %d", w.reg.Len(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

func put(key, value string, micros int64) kv.Op {
	return kv.Op{Kind: kv.KindPut, Key: key, Value: value, Version: kv.Version{Time: time.UnixMicro(micros).UTC()}}
}

// slow is a configuration whose poll never fires within a test: what
// ends a wait is news, its bound or the client.
func slow() kv.WaitConfig {
	return kv.WaitConfig{Timeout: time.Minute, Max: time.Minute, Poll: time.Hour, MaxWaiters: 10}
}

type result struct {
	read kv.Read
	err  error
}

func (w *world) getAtLeast(ctx context.Context, key string, min kv.Version, timeout time.Duration) <-chan result {
	c := make(chan result, 1)
	go func() {
		r, err := w.svc.GetAtLeast(ctx, key, min, timeout)
		c <- result{r, err}
	}()
	return c
}

func TestGetAtLeastAnswersAtOnceWhenReached(t *testing.T) {
	w := newWorld(t, slow())
	old, cur := put("k", "old", 10), put("k", "new", 20)
	w.cache["k"] = cur.Entry()
	w.store["k"] = cur.Entry()

	for _, min := range []kv.Version{old.Version, cur.Version} {
		r, err := w.svc.GetAtLeast(context.Background(), "k", min, time.Minute)
		if err != nil || r.Entry.Value != "new" || r.Source != kv.SourceRedis {
			t.Errorf("GetAtLeast(min %v) = %+v, %v; want new from redis", min, r, err)
		}
	}
	if n := w.reads(); n != 0 {
		t.Errorf("store reads: %d, want none (the cache was new enough)", n)
	}

	// The cache behind, the store not: served from the store, and the
	// cache brought forward.
	w.cache["k"] = old.Entry()
	r, err := w.svc.GetAtLeast(context.Background(), "k", cur.Version, time.Minute)
	if err != nil || r.Entry.Value != "new" || r.Source != kv.SourcePostgres {
		t.Errorf("with an old cache entry: %+v, %v; want new from postgres", r, err)
	}
	if got := w.cache["k"]; got != cur.Entry() {
		t.Errorf("cache after the read: %+v, want %+v", got, cur.Entry())
	}
}

func TestGetAtLeastWaitsForNews(t *testing.T) {
	w := newWorld(t, slow())
	old, cur := put("k", "old", 10), put("k", "new", 20)
	w.apply(old, false)

	res := w.getAtLeast(context.Background(), "k", cur.Version, time.Minute)
	w.waitingFor(t, 1)
	w.apply(put("other", "x", 30), true) // news of another key changes nothing
	w.apply(cur, true)
	r := <-res
	if r.err != nil || r.read.Entry.Value != "new" {
		t.Fatalf("GetAtLeast after the apply = %+v, %v; want new", r.read, r.err)
	}
	if n := w.reg.Len(); n != 0 {
		t.Errorf("waiters after the answer: %d, want 0", n)
	}
}

func TestGetAtLeastOfADeleteIsNotFoundOnceApplied(t *testing.T) {
	w := newWorld(t, slow())
	w.apply(put("k", "v", 10), false)
	del := kv.Op{Kind: kv.KindDelete, Key: "k", Version: kv.Version{Time: time.UnixMicro(20).UTC()}}

	res := w.getAtLeast(context.Background(), "k", del.Version, time.Minute)
	w.waitingFor(t, 1)
	w.apply(del, true)
	r := <-res
	var nf *kv.NotFoundError
	if !errors.As(r.err, &nf) || nf.Version != del.Version {
		t.Errorf("GetAtLeast(the delete's version) = %+v, %v; want not found with the delete's version", r.read, r.err)
	}
}

func TestGetAtLeastTimesOutNamingTheNewestSeen(t *testing.T) {
	cfg := slow()
	w := newWorld(t, cfg)
	old := put("k", "old", 10)
	w.apply(old, false)

	start := time.Now()
	_, err := w.svc.GetAtLeast(context.Background(), "k", put("k", "x", 20).Version, 50*time.Millisecond)
	var nr *kv.NotReachedError
	if !errors.As(err, &nr) || nr.Newest != old.Version {
		t.Fatalf("GetAtLeast of a version never applied = %v; want NotReached naming %v", err, old.Version)
	}
	if waited := time.Since(start); waited < 50*time.Millisecond {
		t.Errorf("answered after %s, before its 50ms bound", waited)
	}
	if n := w.reg.Len(); n != 0 {
		t.Errorf("waiters after the timeout: %d, want 0", n)
	}

	// A bound of zero checks once and does not wait.
	if _, err := w.svc.GetAtLeast(context.Background(), "absent", old.Version, 0); !errors.As(err, &nr) || nr.Newest != (kv.Version{}) {
		t.Errorf("a key never written: %v; want NotReached naming no version", err)
	}
}

func TestGetAtLeastEndsWhenTheClientLeaves(t *testing.T) {
	w := newWorld(t, slow())
	ctx, cancel := context.WithCancel(context.Background())
	res := w.getAtLeast(ctx, "k", put("k", "x", 20).Version, time.Minute)
	w.waitingFor(t, 1)
	cancel()
	if r := <-res; !errors.Is(r.err, context.Canceled) {
		t.Errorf("after the client left: %v, want context.Canceled", r.err)
	}
	if n := w.reg.Len(); n != 0 {
		t.Errorf("waiters after the client left: %d, want 0", n)
	}
}

// News lost (the listener reconnected) or never sent: the waiter finds
// the version in the store, told so by Lost, or by its poll.
func TestGetAtLeastWithoutNews(t *testing.T) {
	t.Run("lost", func(t *testing.T) {
		w := newWorld(t, slow())
		cur := put("k", "new", 20)
		res := w.getAtLeast(context.Background(), "k", cur.Version, time.Minute)
		w.waitingFor(t, 1)
		w.apply(cur, false)
		w.reg.Lost()
		if r := <-res; r.err != nil || r.read.Entry.Value != "new" {
			t.Errorf("after Lost: %+v, %v; want new", r.read, r.err)
		}
	})
	t.Run("poll", func(t *testing.T) {
		cfg := slow()
		cfg.Poll = 10 * time.Millisecond
		w := newWorld(t, cfg)
		cur := put("k", "new", 20)
		res := w.getAtLeast(context.Background(), "k", cur.Version, time.Minute)
		w.waitingFor(t, 1)
		w.apply(cur, false)
		if r := <-res; r.err != nil || r.read.Entry.Value != "new" {
			t.Errorf("by the poll: %+v, %v; want new", r.read, r.err)
		}
	})
}

func TestWaitersCap(t *testing.T) {
	cfg := slow()
	cfg.MaxWaiters = 1
	w := newWorld(t, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	res := w.getAtLeast(ctx, "k", put("k", "x", 20).Version, time.Minute)
	w.waitingFor(t, 1)

	_, err := w.svc.GetAtLeast(context.Background(), "k2", put("k2", "x", 20).Version, time.Minute)
	if !errors.Is(err, kv.ErrTooManyWaiters) || !errors.Is(err, kv.ErrUnavailable) {
		t.Errorf("a read beyond the cap: %v, want ErrTooManyWaiters (unavailable)", err)
	}
	_, err = w.svc.PutApplied(context.Background(), "k3", "v", time.Minute)
	if !errors.Is(err, kv.ErrTooManyWaiters) || len(w.published) != 0 {
		t.Errorf("a write beyond the cap: %v, %d published; want ErrTooManyWaiters and nothing published", err, len(w.published))
	}
	// A read that needs no wait is served whatever the cap.
	w.apply(put("k4", "v", 10), false)
	if _, err := w.svc.GetAtLeast(context.Background(), "k4", put("k4", "v", 10).Version, time.Minute); err != nil {
		t.Errorf("a read that needs no wait, at the cap: %v", err)
	}
	cancel()
	<-res
}

type writeResult struct {
	w   kv.Write
	err error
}

func (w *world) putApplied(ctx context.Context, key, value string, timeout time.Duration) <-chan writeResult {
	c := make(chan writeResult, 1)
	go func() {
		r, err := w.svc.PutApplied(ctx, key, value, timeout)
		c <- writeResult{r, err}
	}()
	return c
}

func TestPutApplied(t *testing.T) {
	t.Run("applied", func(t *testing.T) {
		w := newWorld(t, slow())
		res := w.putApplied(context.Background(), "k", "v", time.Minute)
		op := <-w.published
		w.apply(op, true)
		r := <-res
		if r.err != nil || r.w.Status != kv.Written || r.w.Stored != op.Version || r.w.Op != op {
			t.Errorf("PutApplied = %+v, %v; want applied at %v", r.w, r.err, op.Version)
		}
		if n := w.reads(); n != 0 {
			t.Errorf("store reads: %d, want none (the news said it)", n)
		}
	})
	t.Run("the cache holds it before the answer", func(t *testing.T) {
		w := newWorld(t, slow())
		old := put("k", "old", 1)
		w.apply(old, false)
		w.cache["k"] = old.Entry()
		res := w.putApplied(context.Background(), "k", "v", time.Minute)
		op := <-w.published
		w.apply(op, true)
		if r := <-res; r.w.Status != kv.Written {
			t.Fatalf("PutApplied = %+v, %v; want applied", r.w, r.err)
		}
		if e, _ := w.cached("k"); e != op.Entry() {
			t.Errorf("cache after the answer: %+v, want %+v (a plain read would find the old state)", e, op.Entry())
		}
	})
	t.Run("a reader's late fill cannot undo it", func(t *testing.T) {
		// A plain read missed the cache and read the old row before the
		// commit; its fill comes after the answer.
		w := newWorld(t, slow())
		old := put("k", "old", 1)
		w.apply(old, false)
		res := w.putApplied(context.Background(), "k", "v", time.Minute)
		op := <-w.published
		w.apply(op, true)
		if r := <-res; r.w.Status != kv.Written {
			t.Fatalf("PutApplied = %+v, %v; want applied", r.w, r.err)
		}
		if stored, _ := (cacheOf{w}).Fill(context.Background(), old.Entry()); stored {
			t.Error("the late fill of the old row was stored")
		}
		if e, _ := w.cached("k"); e != op.Entry() {
			t.Errorf("cache after the late fill: %+v, want %+v", e, op.Entry())
		}
	})
	t.Run("no answer while the cache cannot be written", func(t *testing.T) {
		w := newWorld(t, slow())
		w.fillErr = kv.ErrUnavailable
		res := w.putApplied(context.Background(), "k", "v", 50*time.Millisecond)
		op := <-w.published
		w.apply(op, true)
		if r := <-res; r.err != nil || r.w.Status != kv.Pending {
			t.Errorf("PutApplied with the cache failing = %+v, %v; want pending at the bound", r.w, r.err)
		}
	})
	t.Run("superseded", func(t *testing.T) {
		w := newWorld(t, slow())
		res := w.putApplied(context.Background(), "k", "v", time.Minute)
		op := <-w.published
		newer := put("k", "newer", op.Version.Time.UnixMicro()+1)
		w.apply(newer, true)
		r := <-res
		if r.err != nil || r.w.Status != kv.Superseded || r.w.Stored != newer.Version {
			t.Errorf("PutApplied = %+v, %v; want superseded by %v", r.w, r.err, newer.Version)
		}
		if e, _ := w.cached("k"); e != newer.Entry() {
			t.Errorf("cache after the answer: %+v, want the newer state %+v", e, newer.Entry())
		}
	})
	t.Run("older news waits on", func(t *testing.T) {
		w := newWorld(t, slow())
		res := w.putApplied(context.Background(), "k", "v", time.Minute)
		op := <-w.published
		w.apply(put("k", "older", op.Version.Time.UnixMicro()-1), true)
		w.apply(op, true)
		if r := <-res; r.w.Status != kv.Written {
			t.Errorf("PutApplied = %+v, %v; want applied", r.w, r.err)
		}
	})
	t.Run("timeout", func(t *testing.T) {
		w := newWorld(t, slow())
		r, err := w.svc.PutApplied(context.Background(), "k", "v", 20*time.Millisecond)
		if err != nil || r.Status != kv.Pending || r.Op.Version.Time.IsZero() {
			t.Errorf("PutApplied never applied = %+v, %v; want pending with the op's version", r, err)
		}
		if n := w.reg.Len(); n != 0 {
			t.Errorf("waiters after the timeout: %d, want 0", n)
		}
	})
	t.Run("client gone", func(t *testing.T) {
		w := newWorld(t, slow())
		ctx, cancel := context.WithCancel(context.Background())
		res := w.putApplied(ctx, "k", "v", time.Minute)
		<-w.published
		cancel()
		if r := <-res; r.err != nil || r.w.Status != kv.Pending {
			t.Errorf("PutApplied after the client left = %+v, %v; want pending", r.w, r.err)
		}
		if n := w.reg.Len(); n != 0 {
			t.Errorf("waiters after the client left: %d, want 0", n)
		}
	})
	t.Run("publish fails", func(t *testing.T) {
		w := newWorld(t, slow())
		w.pubErr = kv.ErrUnavailable
		if _, err := w.svc.PutApplied(context.Background(), "k", "v", time.Minute); !errors.Is(err, kv.ErrUnavailable) {
			t.Errorf("PutApplied with the broker down: %v, want ErrUnavailable", err)
		}
		if n := w.reg.Len(); n != 0 {
			t.Errorf("waiters after a failed publish: %d, want 0", n)
		}
	})
	t.Run("delete found by the poll", func(t *testing.T) {
		cfg := slow()
		cfg.Poll = 10 * time.Millisecond
		w := newWorld(t, cfg)
		c := make(chan writeResult, 1)
		go func() {
			r, err := w.svc.DeleteApplied(context.Background(), "k", time.Minute)
			c <- writeResult{r, err}
		}()
		op := <-w.published
		w.apply(op, false)
		if r := <-c; r.err != nil || r.w.Status != kv.Written || r.w.Op.Kind != kv.KindDelete {
			t.Errorf("DeleteApplied = %+v, %v; want the delete applied", r.w, r.err)
		}
		if e, _ := w.cached("k"); !e.Deleted || e.Version != op.Version {
			t.Errorf("cache after the answer: %+v, want the delete's tombstone", e)
		}
	})
}

// A process that drains ends every wait at once, as if its bound had
// passed, and those that come after it check once and wait no more: a
// read answers with the newest version seen, a write as accepted.
func TestEndWaits(t *testing.T) {
	w := newWorld(t, slow())
	old := put("k", "old", 10)
	w.apply(old, false)
	read := w.getAtLeast(context.Background(), "k", put("k", "x", 20).Version, time.Minute)
	write := w.putApplied(context.Background(), "k", "v", time.Minute)
	<-w.published
	w.waitingFor(t, 2)

	start := time.Now()
	w.svc.EndWaits()
	w.svc.EndWaits() // as often as one likes
	check := func(what string, r result, wr writeResult) {
		t.Helper()
		var nr *kv.NotReachedError
		if !errors.As(r.err, &nr) || nr.Newest != old.Version {
			t.Errorf("%s: read = %+v, %v; want NotReached naming %v", what, r.read, r.err, old.Version)
		}
		if wr.err != nil || wr.w.Status != kv.Pending || wr.w.Op.Version.Time.IsZero() {
			t.Errorf("%s: write = %+v, %v; want pending with the op's version", what, wr.w, wr.err)
		}
	}
	check("waiting", <-read, <-write)
	later := w.putApplied(context.Background(), "k", "v2", time.Minute)
	<-w.published
	check("after", <-w.getAtLeast(context.Background(), "k", put("k", "y", 30).Version, time.Minute), <-later)
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("the waits took %s to end; their bound is a minute", took)
	}
	if n := w.reg.Len(); n != 0 {
		t.Errorf("waiters after EndWaits: %d, want 0", n)
	}
}

func TestWaitConfig(t *testing.T) {
	cfg := kv.DefaultWaitConfig()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("the defaults: %v", err)
	}
	d := func(v time.Duration) *time.Duration { return &v }
	for _, tt := range []struct {
		asked *time.Duration
		want  time.Duration
	}{
		{nil, cfg.Timeout},
		{d(time.Second), time.Second},
		{d(0), 0},
		{d(time.Hour), cfg.Max},
	} {
		if got := cfg.Bound(tt.asked); got != tt.want {
			t.Errorf("Bound(%v) = %s, want %s", tt.asked, got, tt.want)
		}
	}
	bad := cfg
	bad.Timeout = bad.Max + time.Second
	if bad.Validate() == nil {
		t.Error("KV_WAIT_TIMEOUT above KV_WAIT_MAX: no error")
	}
}
