package metrics

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"
)

func BenchmarkObserve(b *testing.B) {
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "x", Buckets: latencyBuckets}, []string{"a", "b"})
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{1}, SpanID: trace.SpanID{1}, TraceFlags: trace.FlagsSampled})
	ctx := trace.ContextWithSpanContext(context.Background(), sc)
	b.Run("exemplar", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			observe(h.WithLabelValues("redis", "get"), ctx, time.Millisecond)
		}
	})
	b.Run("plain", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			observe(h.WithLabelValues("redis", "get"), context.Background(), time.Millisecond)
		}
	})
}

// A bucket takes an exemplar at its first observation, then at most one
// every exemplarEvery; other buckets and other series are not held back.
func TestExemplarDue(t *testing.T) {
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "y", Buckets: latencyBuckets}, []string{"a"})
	fast, other := h.WithLabelValues("fast"), h.WithLabelValues("other")
	t0 := time.Now().UnixNano()
	every := int64(exemplarEvery)
	for _, tc := range []struct {
		name string
		h    prometheus.Observer
		v    float64
		at   int64
		want bool
	}{
		{"first in its bucket", fast, 0.0003, t0, true},
		{"same bucket, soon after", fast, 0.0004, t0 + every/2, false},
		{"another bucket", fast, 0.2, t0 + every/2, true},
		{"another series", other, 0.0003, t0 + every/2, true},
		{"same bucket, later", fast, 0.0005, t0 + every, true},
		{"above every bound", fast, 1000, t0, true},
		{"above every bound, soon after", fast, 2000, t0 + 1, false},
	} {
		if got := exemplarDue(tc.h, tc.v, tc.at); got != tc.want {
			t.Errorf("%s: exemplarDue = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestStatusClass(t *testing.T) {
	for status, want := range map[int]string{99: "other", 101: "1xx", 200: "2xx", 304: "3xx", 499: "4xx", 503: "5xx", 600: "other"} {
		if got := statusClass(status); got != want {
			t.Errorf("statusClass(%d) = %q, want %q", status, got, want)
		}
	}
}
