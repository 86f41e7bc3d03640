// Package notify fans the news of applied versions out to the requests of
// one API process that wait for them. The process's one listener (package
// postgres) feeds a Registry; each waiting request holds a Watch on its key.
// No goroutine and no connection per waiter: a watch is a channel and a
// version, and news of a key touches only that key's watches.
package notify

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/kvstack/kvstack/internal/kv"
)

// Registry holds the watches of one process. It implements kv.Waiters and
// is safe for concurrent use.
type Registry struct {
	max       int // 0: no cap
	perClient int // 0: no cap

	mu       sync.Mutex
	byKey    map[string][]*Watch
	n        int
	byClient map[string]int // watches held per client (kv.WriterOf); none for ""
}

var _ kv.Waiters = (*Registry)(nil)

// NewRegistry returns a registry that holds at most max watches at once,
// and at most perClient of them for one client, the subject kv.WriterOf
// names (0: no cap). The share keeps one client from holding every watch;
// requests that name no client (auth off) share only max.
func NewRegistry(max, perClient int) *Registry {
	return &Registry{max: max, perClient: perClient, byKey: make(map[string][]*Watch), byClient: make(map[string]int)}
}

// Watch is one request's interest in one key. It implements kv.Watch.
type Watch struct {
	r       *Registry
	key     string
	client  string
	changed chan struct{} // buffered 1: news while the waiter is busy is kept, once

	// guarded by r.mu
	newest kv.Version
	lost   bool
	closed bool
}

// Watch registers interest in key for the client ctx names, or fails with
// an error wrapping kv.ErrTooManyClientWaiters when that client holds its
// share, or kv.ErrTooManyWaiters when the registry is full. The kind is for
// the measuring decorator; the registry treats all alike.
func (r *Registry) Watch(ctx context.Context, key string, _ kv.WaitKind) (kv.Watch, error) {
	return r.watch(key, kv.WriterOf(ctx))
}

func (r *Registry) watch(key, client string) (*Watch, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.max > 0 && r.n >= r.max {
		return nil, fmt.Errorf("%d waiting: %w", r.n, kv.ErrTooManyWaiters)
	}
	if client != "" && r.perClient > 0 && r.byClient[client] >= r.perClient {
		return nil, fmt.Errorf("%d waiting: %w", r.byClient[client], kv.ErrTooManyClientWaiters)
	}
	w := &Watch{r: r, key: key, client: client, changed: make(chan struct{}, 1)}
	r.byKey[key] = append(r.byKey[key], w)
	r.n++
	if client != "" {
		r.byClient[client]++
	}
	return w, nil
}

// Applied tells the watches of key that version v of it was applied.
func (r *Registry) Applied(key string, v kv.Version) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, w := range r.byKey[key] {
		if v.Newer(w.newest) {
			w.newest = v
			w.signal()
		}
	}
}

// Lost tells every watch that news may have been lost (the listener was
// disconnected): each waiter then reads the store.
func (r *Registry) Lost() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, ws := range r.byKey {
		for _, w := range ws {
			w.lost = true
			w.signal()
		}
	}
}

// Len is the number of watches held.
func (r *Registry) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n
}

func (w *Watch) signal() {
	select {
	case w.changed <- struct{}{}:
	default: // one pending signal says it all: Seen has the rest
	}
}

// Changed implements kv.Watch.
func (w *Watch) Changed() <-chan struct{} { return w.changed }

// Seen implements kv.Watch.
func (w *Watch) Seen() (kv.Version, bool) {
	w.r.mu.Lock()
	defer w.r.mu.Unlock()
	lost := w.lost
	w.lost = false
	return w.newest, lost
}

// Done implements kv.Watch: it releases the watch.
func (w *Watch) Done(kv.WaitOutcome) { w.release() }

// Abandon implements kv.Watch: it releases the watch.
func (w *Watch) Abandon() { w.release() }

func (w *Watch) release() {
	r := w.r
	r.mu.Lock()
	defer r.mu.Unlock()
	if w.closed {
		return
	}
	w.closed = true
	r.n--
	if w.client != "" {
		if r.byClient[w.client]--; r.byClient[w.client] == 0 {
			delete(r.byClient, w.client)
		}
	}
	ws := r.byKey[w.key]
	i := slices.Index(ws, w)
	ws[i] = ws[len(ws)-1]
	ws[len(ws)-1] = nil
	if ws = ws[:len(ws)-1]; len(ws) == 0 {
		delete(r.byKey, w.key)
	} else {
		r.byKey[w.key] = ws
	}
}
