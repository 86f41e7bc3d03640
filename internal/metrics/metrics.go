// Package metrics declares every Prometheus metric kvstack exports, in one
// place, so that dashboards and alert rules can be read against it. Each
// process builds its own registry (New), so that tests can run several
// processes in one binary; adapters take the typed groups below, whose
// methods do nothing on a nil receiver.
//
// Names follow Prometheus conventions (kvstack_ prefix, base units,
// _total counters); no label ever takes a value a client chose: keys never
// become labels, routes are templates, queues come from configuration.
package metrics

import (
	"context"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.opentelemetry.io/otel/trace"
)

// New returns a registry holding the Go runtime and process collectors.
func New() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return reg
}

// latencyBuckets suit calls from 100 µs to 10 s.
var latencyBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// observe records d on h, with the trace id of ctx's span as the exemplar
// when the span is sampled, so that a latency panel can jump to the trace.
//
// A series keeps one exemplar per bucket, the latest, and Prometheus reads
// it at each scrape (every 5 s): a bucket takes a new one at most every
// exemplarEvery, which no scrape can tell from one per observation, while
// an exemplar costs ~0.6 µs and 10 allocations (lab/bench/NOTES.md) and a GET
// makes two observations. The first observation of a bucket always gives
// it one.
func observe(h prometheus.Observer, ctx context.Context, d time.Duration) {
	v := d.Seconds()
	if sc := trace.SpanContextFromContext(ctx); sc.IsSampled() {
		if eo, ok := h.(prometheus.ExemplarObserver); ok && exemplarDue(h, v, time.Now().UnixNano()) {
			eo.ObserveWithExemplar(v, prometheus.Labels{"trace_id": sc.TraceID().String()})
			return
		}
	}
	h.Observe(v)
}

// exemplarEvery is how often at most one bucket of one series takes a new
// exemplar.
const exemplarEvery = 100 * time.Millisecond

// exemplarSlots are every bucket bound of the duration histograms, so
// that each bucket of each is a whole number of slots.
var exemplarSlots = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300}

// exemplarGate is when each slot of one series may next take an exemplar
// (Unix ns); the last is above every bound.
type exemplarGate [21]atomic.Int64

// gates holds a gate per series (the histograms' children never go away).
var gates sync.Map // prometheus.Observer → *exemplarGate

// exemplarDue tells whether v, observed on h at now, should carry an
// exemplar, and if so reserves its slot until now + exemplarEvery.
func exemplarDue(h prometheus.Observer, v float64, now int64) bool {
	g, ok := gates.Load(h)
	if !ok {
		g, _ = gates.LoadOrStore(h, new(exemplarGate))
	}
	slot := &g.(*exemplarGate)[sort.SearchFloat64s(exemplarSlots, v)]
	next := slot.Load()
	return now >= next && slot.CompareAndSwap(next, now+int64(exemplarEvery))
}
