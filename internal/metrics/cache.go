package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kvstack/kvstack/internal/kv"
)

// Cache is the read path's cache metrics: the hit ratio is
// hits / (hits + misses).
type Cache struct {
	requests *prometheus.CounterVec
	fills    *prometheus.CounterVec
}

// Cache fill results. A lookup's result is its kv.Lookup.
const (
	FillStored = "stored"
	FillStale  = "stale"
	FillError  = "error"
)

// NewCache registers the cache metrics on reg.
func NewCache(reg prometheus.Registerer) *Cache {
	m := &Cache{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kvstack_cache_requests_total",
			Help: "Cache lookups by reads, by result (hit, miss, error: Redis failed and PostgreSQL served).",
		}, []string{"result"}),
		fills: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kvstack_cache_fills_total",
			Help: "Cache fills after a miss, by result (stored; stale: refused because the cache held the same or a newer version; error).",
		}, []string{"result"}),
	}
	for _, l := range kv.Lookups {
		m.requests.WithLabelValues(l.String())
	}
	for _, r := range []string{FillStored, FillStale, FillError} {
		m.fills.WithLabelValues(r)
	}
	reg.MustRegister(m.requests, m.fills)
	return m
}

// Lookup counts one cache lookup.
func (m *Cache) Lookup(l kv.Lookup) {
	if m != nil {
		m.requests.WithLabelValues(l.String()).Inc()
	}
}

// Fill counts one cache fill.
func (m *Cache) Fill(result string) {
	if m != nil {
		m.fills.WithLabelValues(result).Inc()
	}
}
