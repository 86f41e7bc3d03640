package notify

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/kvstack/kvstack/internal/kv"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func version(micros int64) kv.Version { return kv.Version{Time: time.UnixMicro(micros).UTC()} }

func mustWatch(t *testing.T, r *Registry, key string) *Watch {
	t.Helper()
	w, err := r.watch(key, "")
	if err != nil {
		t.Fatalf("Watch(%q): %v", key, err)
	}
	return w
}

// signalled reports whether a signal is pending, without waiting.
func signalled(w *Watch) bool {
	select {
	case <-w.Changed():
		return true
	default:
		return false
	}
}

func TestAppliedFansOutToTheKeysWatches(t *testing.T) {
	r := NewRegistry(0, 0)
	a1, a2, b := mustWatch(t, r, "a"), mustWatch(t, r, "a"), mustWatch(t, r, "b")

	r.Applied("a", version(10))
	for i, w := range []*Watch{a1, a2} {
		if !signalled(w) {
			t.Fatalf("watch %d of a: no signal after news of a", i+1)
		}
		if got, lost := w.Seen(); got != version(10) || lost {
			t.Errorf("watch %d of a: Seen() = %v, %v; want %v, false", i+1, got, lost, version(10))
		}
	}
	if signalled(b) {
		t.Error("watch of b: signalled by news of a")
	}

	// Only newer news signals, and Seen keeps the newest.
	r.Applied("a", version(5))
	if signalled(a1) {
		t.Error("older news signalled")
	}
	r.Applied("a", version(20))
	r.Applied("a", version(30))
	if !signalled(a1) || signalled(a1) {
		t.Error("two pieces of news: want exactly one pending signal")
	}
	if got, _ := a1.Seen(); got != version(30) {
		t.Errorf("Seen() = %v, want the newest %v", got, version(30))
	}
}

func TestLostWakesEveryWatchOnce(t *testing.T) {
	r := NewRegistry(0, 0)
	a, b := mustWatch(t, r, "a"), mustWatch(t, r, "b")
	r.Lost()
	for _, w := range []*Watch{a, b} {
		if !signalled(w) {
			t.Fatalf("watch of %s: no signal after Lost", w.key)
		}
		if _, lost := w.Seen(); !lost {
			t.Errorf("watch of %s: Seen() says nothing was lost", w.key)
		}
		if _, lost := w.Seen(); lost {
			t.Errorf("watch of %s: lost reported twice", w.key)
		}
	}
}

func TestReleaseFreesTheWatch(t *testing.T) {
	r := NewRegistry(0, 0)
	a1, a2 := mustWatch(t, r, "a"), mustWatch(t, r, "a")
	a1.Done(kv.WaitClientGone)
	a1.Done(kv.WaitClientGone) // twice is harmless
	if got := r.Len(); got != 1 {
		t.Fatalf("Len after one release = %d, want 1", got)
	}
	r.Applied("a", version(1))
	if !signalled(a2) {
		t.Error("the remaining watch lost its news")
	}
	a2.Abandon()
	if got, keys := r.Len(), len(r.byKey); got != 0 || keys != 0 {
		t.Errorf("after releasing all: Len %d, keys held %d; want 0, 0", got, keys)
	}
}

func TestCap(t *testing.T) {
	r := NewRegistry(2, 0)
	a := mustWatch(t, r, "a")
	mustWatch(t, r, "b")
	if _, err := r.Watch(context.Background(), "c", kv.WaitRead); !errors.Is(err, kv.ErrTooManyWaiters) {
		t.Fatalf("third Watch with a cap of 2: %v, want ErrTooManyWaiters", err)
	}
	a.Done(kv.WaitSatisfied)
	if _, err := r.Watch(context.Background(), "c", kv.WaitRead); err != nil {
		t.Errorf("Watch after a release: %v, want room again", err)
	}
}

// One client holds at most its share of the watches: past it, its next
// watch is refused while other clients (and requests naming none) still
// get theirs, and a release gives the share back.
func TestClientShare(t *testing.T) {
	r := NewRegistry(10, 2)
	alice := kv.WithWriter(context.Background(), "alice")
	bob := kv.WithWriter(context.Background(), "bob")
	var held []kv.Watch
	for i := range 2 {
		w, err := r.Watch(alice, "k", kv.WaitRead)
		if err != nil {
			t.Fatalf("alice's watch %d of a share of 2: %v", i+1, err)
		}
		held = append(held, w)
	}
	_, err := r.Watch(alice, "k", kv.WaitWrite)
	if !errors.Is(err, kv.ErrTooManyClientWaiters) || !errors.Is(err, kv.ErrTooManyWaiters) {
		t.Fatalf("alice's third watch: %v, want ErrTooManyClientWaiters (wrapping ErrTooManyWaiters)", err)
	}
	if _, err := r.Watch(bob, "k", kv.WaitRead); err != nil {
		t.Errorf("bob's watch while alice holds her share: %v, want one", err)
	}
	if _, err := r.Watch(context.Background(), "k", kv.WaitRead); err != nil {
		t.Errorf("a watch naming no client: %v, want one", err)
	}
	held[0].Done(kv.WaitSatisfied)
	held[0].Done(kv.WaitSatisfied) // a second release gives nothing back twice
	if _, err := r.Watch(alice, "k", kv.WaitRead); err != nil {
		t.Errorf("alice's watch after a release: %v, want room again", err)
	}
	if _, err := r.Watch(alice, "k", kv.WaitRead); !errors.Is(err, kv.ErrTooManyClientWaiters) {
		t.Errorf("alice's watch past her share again: %v, want ErrTooManyClientWaiters", err)
	}
	if got := r.byClient["alice"]; got != 2 {
		t.Errorf("alice holds %d watches by the count, want 2", got)
	}
}

// Many waiters coming and going on few keys while news flows: every
// waiter that registered before the news of its version hears of it, and
// nothing is left behind.
func TestConcurrentWatchesHearTheirNews(t *testing.T) {
	r := NewRegistry(0, 0)
	const waiters, keys = 200, 5
	var wg sync.WaitGroup
	registered := make(chan struct{}, waiters)
	for i := range waiters {
		wg.Go(func() {
			w := mustWatch(t, r, fmt.Sprint("k", i%keys))
			defer w.Done(kv.WaitSatisfied)
			registered <- struct{}{}
			deadline := time.After(10 * time.Second)
			for {
				select {
				case <-w.Changed():
					if v, _ := w.Seen(); !version(100).Newer(v) {
						return
					}
				case <-deadline:
					t.Errorf("waiter %d: no news of version 100 within 10s", i)
					return
				}
			}
		})
	}
	for range waiters {
		<-registered
	}
	for v := range int64(101) {
		for k := range keys {
			r.Applied(fmt.Sprint("k", k), version(v))
		}
	}
	wg.Wait()
	if n := r.Len(); n != 0 {
		t.Errorf("Len after every waiter left = %d, want 0", n)
	}
}
