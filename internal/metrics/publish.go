package metrics

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Publish is the API's publishing metrics.
type Publish struct {
	total    *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// Publish outcomes.
const (
	Confirmed   = "confirmed"
	Nacked      = "nacked"
	Timeout     = "timeout"
	Unavailable = "unavailable"
)

// NewPublish registers the publishing metrics on reg for the given queues.
func NewPublish(reg prometheus.Registerer, queues ...string) *Publish {
	m := &Publish{
		total: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kvstack_publish_total",
			Help: "Operations published to RabbitMQ, by queue and outcome (confirmed; nacked; timeout: no confirm in time; unavailable: not connected, blocked or closed).",
		}, []string{"queue", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "kvstack_publish_duration_seconds",
			Help:    "Time from publish to the broker's confirm (or the failure), by queue.",
			Buckets: latencyBuckets,
		}, []string{"queue"}),
	}
	for _, q := range queues {
		for _, o := range []string{Confirmed, Nacked, Timeout, Unavailable} {
			m.total.WithLabelValues(q, o)
		}
		m.duration.WithLabelValues(q)
	}
	reg.MustRegister(m.total, m.duration)
	return m
}

// Observe records one publish.
func (m *Publish) Observe(ctx context.Context, queue, outcome string, d time.Duration) {
	if m == nil {
		return
	}
	m.total.WithLabelValues(queue, outcome).Inc()
	observe(m.duration.WithLabelValues(queue), ctx, d)
}
