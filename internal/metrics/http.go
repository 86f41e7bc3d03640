package metrics

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// HTTP is the API's request metrics (RED per route, method and status
// class).
type HTTP struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	inFlight prometheus.Gauge
	limited  prometheus.Counter
}

// NewHTTP registers the HTTP metrics on reg.
func NewHTTP(reg prometheus.Registerer) *HTTP {
	m := &HTTP{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kvstack_http_requests_total",
			Help: "HTTP requests served, by route template, method and status class (2xx, 4xx, 5xx).",
		}, []string{"route", "method", "status_class"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "kvstack_http_request_duration_seconds",
			Help:    "Time to serve an HTTP request, by route template and method.",
			Buckets: latencyBuckets,
		}, []string{"route", "method"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kvstack_http_requests_in_flight",
			Help: "HTTP requests being served.",
		}),
		limited: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kvstack_http_rate_limited_total",
			Help: "Requests refused with 429 because their client (a token's subject) sent more than KV_RATE_LIMIT a second to this replica.",
		}),
	}
	reg.MustRegister(m.requests, m.duration, m.inFlight, m.limited)
	return m
}

// Start counts a request in flight; call the returned func when it is done.
func (m *HTTP) Start() (done func()) {
	if m == nil {
		return func() {}
	}
	m.inFlight.Inc()
	return m.inFlight.Dec
}

// RateLimited counts a request refused by the per-client rate limit.
func (m *HTTP) RateLimited() {
	if m == nil {
		return
	}
	m.limited.Inc()
}

// Observe records one served request.
func (m *HTTP) Observe(ctx context.Context, route, method string, status int, d time.Duration) {
	if m == nil {
		return
	}
	m.requests.WithLabelValues(route, method, statusClass(status)).Inc()
	observe(m.duration.WithLabelValues(route, method), ctx, d)
}

func statusClass(status int) string {
	switch status / 100 {
	case 1:
		return "1xx"
	case 2:
		return "2xx"
	case 3:
		return "3xx"
	case 4:
		return "4xx"
	case 5:
		return "5xx"
	}
	return "other"
}
