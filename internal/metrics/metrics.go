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
func observe(h prometheus.Observer, ctx context.Context, d time.Duration) {
	observeValue(h, ctx, d.Seconds())
}

func observeValue(h prometheus.Observer, ctx context.Context, v float64) {
	if sc := trace.SpanContextFromContext(ctx); sc.IsSampled() {
		if eo, ok := h.(prometheus.ExemplarObserver); ok {
			eo.ObserveWithExemplar(v, prometheus.Labels{"trace_id": sc.TraceID().String()})
			return
		}
	}
	h.Observe(v)
}
