package consumer

import (
	"context"
	"sync"
	"time"

	"github.com/kvstack/kvstack/internal/kv"
)

// maxPendingRepairs bounds the memory held for cache repairs during a long
// Redis outage. Past it the processor forgets the entries and purges the
// whole cache once Redis is back: cheaper than remembering, and still
// coherent, since every read then refills from PostgreSQL.
const maxPendingRepairs = 100_000

// cacheRepair remembers the newest entry per key that could not be written to
// the cache, so that a Redis that comes back without having lost its data
// (a network partition, a pause) does not keep serving old values.
type cacheRepair struct {
	mu       sync.Mutex
	pending  map[string]kv.Entry
	overflow bool
	max      int
}

func newCacheRepair(max int) *cacheRepair {
	return &cacheRepair{pending: make(map[string]kv.Entry), max: max}
}

func (r *cacheRepair) add(entries []kv.Entry) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.overflow {
		return
	}
	for _, e := range entries {
		if cur, ok := r.pending[e.Key]; !ok || e.Version.Newer(cur.Version) {
			r.pending[e.Key] = e
		}
	}
	if len(r.pending) > r.max {
		r.overflow = true
		r.pending = make(map[string]kv.Entry)
	}
}

// take hands over what is owed to the cache and forgets it; give it back
// with putBack if the repair fails. Failures recorded meanwhile are kept.
func (r *cacheRepair) take() (entries []kv.Entry, purge bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range r.pending {
		entries = append(entries, e)
	}
	purge = r.overflow
	r.pending, r.overflow = make(map[string]kv.Entry), false
	return entries, purge
}

func (r *cacheRepair) putBack(entries []kv.Entry, purge bool) {
	if purge {
		r.mu.Lock()
		r.overflow, r.pending = true, make(map[string]kv.Entry)
		r.mu.Unlock()
		return
	}
	r.add(entries)
}

// size reports how many keys wait for repair, and whether a purge does.
func (r *cacheRepair) size() (int, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.pending), r.overflow
}

// RunCacheRepair retries, every interval until ctx is done, the cache writes
// that failed.
func (p *Processor) RunCacheRepair(ctx context.Context, interval time.Duration) {
	every(ctx, interval, func() { p.repairOnce(ctx) })
}

// PendingRepairs reports how many keys wait for a cache write that failed.
func (p *Processor) PendingRepairs() int {
	n, _ := p.repair.size()
	return n
}

func (p *Processor) repairOnce(ctx context.Context) {
	entries, purge := p.repair.take()
	if len(entries) == 0 && !purge {
		return
	}
	if err := p.applyRepair(ctx, entries, purge); err != nil {
		p.repair.putBack(entries, purge)
		return
	}
	p.log.Info().Int("entries", len(entries)).Bool("purged", purge).Msg("cache repaired")
}

func (p *Processor) applyRepair(ctx context.Context, entries []kv.Entry, purge bool) error {
	if purge {
		return p.cache.Purge(ctx)
	}
	return p.cache.Apply(ctx, entries)
}
