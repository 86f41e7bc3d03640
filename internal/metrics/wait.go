package metrics

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kvstack/kvstack/internal/kv"
)

// Rejected is the wait outcome of a request refused at the waiters' cap
// (503), beside kv.WaitOutcomes.
const Rejected = "rejected"

// Wait is the API's waiting for versions: reads with ?min_version= and
// writes with ?wait=applied that had to wait, the news that drives them,
// and the listener that hears it.
type Wait struct {
	waits    *prometheus.CounterVec
	duration *prometheus.HistogramVec
	news     prometheus.Counter
	reg      prometheus.Registerer
}

// NewWait registers the wait metrics on reg.
func NewWait(reg prometheus.Registerer) *Wait {
	m := &Wait{
		waits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kvstack_waits_total",
			Help: "Requests that waited for a version, by kind (read: ?min_version=; write: ?wait=applied) and outcome (satisfied; timeout; client_gone; rejected: refused at KV_MAX_WAITERS).",
		}, []string{"kind", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "kvstack_wait_duration_seconds",
			Help:    "Time a request waited for a version, by kind (a write's from before its publish), whatever the outcome.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"kind"}),
		news: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kvstack_wait_news_total",
			Help: "Applied versions heard of from the consumers' notifications (one per key and batch).",
		}),
		reg: reg,
	}
	for _, k := range kv.WaitKinds {
		for _, o := range kv.WaitOutcomes {
			m.waits.WithLabelValues(string(k), o.String())
		}
		m.waits.WithLabelValues(string(k), Rejected)
		m.duration.WithLabelValues(string(k))
	}
	reg.MustRegister(m.waits, m.duration, m.news)
	return m
}

// Waited records one wait that ended with o after d; ctx carries its trace.
func (m *Wait) Waited(ctx context.Context, kind kv.WaitKind, o kv.WaitOutcome, d time.Duration) {
	if m == nil {
		return
	}
	m.waits.WithLabelValues(string(kind), o.String()).Inc()
	observe(m.duration.WithLabelValues(string(kind)), ctx, d)
}

// Rejected counts one request refused at the waiters' cap.
func (m *Wait) Rejected(kind kv.WaitKind) {
	if m != nil {
		m.waits.WithLabelValues(string(kind), Rejected).Inc()
	}
}

// News counts one applied version heard of.
func (m *Wait) News() {
	if m != nil {
		m.news.Inc()
	}
}

// Waiters exports, as it is at each scrape, the number of requests waiting.
func (m *Wait) Waiters(n func() int) {
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "kvstack_waiters",
		Help: "Requests waiting for a version now (at most KV_MAX_WAITERS).",
	}, func() float64 { return float64(n()) }))
}

// Listening exports whether the listener hears news now (0: waits rest on
// polling the store).
func (m *Wait) Listening(up func() bool) {
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "kvstack_wait_listener_up",
		Help: "1 while the API's listener is connected and LISTENing for news of applied versions.",
	}, func() float64 {
		if up() {
			return 1
		}
		return 0
	}))
}
