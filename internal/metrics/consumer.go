package metrics

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kvstack/kvstack/internal/kv"
)

// Consumer is the consumer's metrics.
type Consumer struct {
	messages      *prometheus.CounterVec
	retries       prometheus.Counter
	batchSize     prometheus.Histogram
	applyDuration prometheus.Histogram
	lag           *prometheus.HistogramVec
	purged        prometheus.Counter
	deadLetters   *prometheus.CounterVec
	unsigned      *prometheus.CounterVec
	reg           prometheus.Registerer
}

// NewConsumer registers the consumer metrics on reg for the given queues;
// reasons are the dead-letter reasons (consumer.DeadLetterReasons).
func NewConsumer(reg prometheus.Registerer, reasons []string, queues ...string) *Consumer {
	m := &Consumer{
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kvstack_consumer_messages_total",
			Help: "Messages handled, by queue and outcome (applied; duplicate: already applied, a redelivery; stale: a newer operation won; dead_lettered).",
		}, []string{"queue", "outcome"}),
		retries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kvstack_consumer_batch_retries_total",
			Help: "Batches handled again because a dependency failed (the batch is kept, neither acked nor requeued).",
		}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "kvstack_consumer_batch_size",
			Help:    "Messages per handled batch.",
			Buckets: []float64{1, 2, 5, 10, 25, 50, 100, 250, 500, 1000},
		}),
		applyDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "kvstack_consumer_apply_duration_seconds",
			Help:    "Time to apply one batch: the PostgreSQL transaction and the Redis update.",
			Buckets: latencyBuckets,
		}),
		lag: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "kvstack_consumer_lag_seconds",
			Help:    "End-to-end lag: from the API accepting an operation (its timestamp) to the consumer applying it, by queue.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300},
		}, []string{"queue"}),
		purged: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kvstack_consumer_tombstones_purged_total",
			Help: "Tombstones deleted after the retention window.",
		}),
		deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kvstack_consumer_dead_letters_total",
			Help: "Messages refused before they were applied, dead-lettered, by queue and reason (unsigned, unknown_key, bad_signature: the signature check; invalid: not a valid message).",
		}, []string{"queue", "reason"}),
		unsigned: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kvstack_consumer_unsigned_accepted_total",
			Help: "Messages without a signature applied all the same, by queue: KV_ACCEPT_UNSIGNED_MESSAGES is on (an upgrade from APIs that did not sign).",
		}, []string{"queue"}),
		reg: reg,
	}
	for _, q := range queues {
		for _, o := range kv.Outcomes {
			m.messages.WithLabelValues(q, o.String())
		}
		m.lag.WithLabelValues(q)
		m.unsigned.WithLabelValues(q)
		for _, r := range reasons {
			m.deadLetters.WithLabelValues(q, r)
		}
	}
	reg.MustRegister(m.messages, m.retries, m.batchSize, m.applyDuration, m.lag, m.purged, m.deadLetters, m.unsigned)
	return m
}

// DeadLettered counts a message refused for reason.
func (m *Consumer) DeadLettered(queue, reason string) {
	if m != nil {
		m.deadLetters.WithLabelValues(queue, reason).Inc()
	}
}

// UnsignedAccepted counts a message applied without a signature.
func (m *Consumer) UnsignedAccepted(queue string) {
	if m != nil {
		m.unsigned.WithLabelValues(queue).Inc()
	}
}

// Message counts one handled message.
func (m *Consumer) Message(queue string, o kv.Outcome) {
	if m != nil {
		m.messages.WithLabelValues(queue, o.String()).Inc()
	}
}

// Lag records the lag of one applied message; ctx carries its trace.
func (m *Consumer) Lag(ctx context.Context, queue string, d time.Duration) {
	if m != nil {
		observe(m.lag.WithLabelValues(queue), ctx, d)
	}
}

// Batch records one handled batch.
func (m *Consumer) Batch(ctx context.Context, size int, d time.Duration) {
	if m == nil {
		return
	}
	m.batchSize.Observe(float64(size))
	observe(m.applyDuration, ctx, d)
}

// Retry counts one batch retried.
func (m *Consumer) Retry() {
	if m != nil {
		m.retries.Inc()
	}
}

// RepairsPending exports, as it is at each scrape, the number of keys owed
// to the cache.
func (m *Consumer) RepairsPending(pending func() int) {
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "kvstack_consumer_cache_repairs_pending",
		Help: "Keys whose cache update failed and waits for Redis to come back.",
	}, func() float64 { return float64(pending()) }))
}

// Purged counts purged tombstones.
func (m *Consumer) Purged(n int64) {
	if m != nil {
		m.purged.Add(float64(n))
	}
}
