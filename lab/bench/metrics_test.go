package bench

import (
	"math"
	"testing"
)

const exposition = `# HELP kvstack_consumer_messages_total Messages handled.
# TYPE kvstack_consumer_messages_total counter
kvstack_consumer_messages_total{outcome="applied",queue="add_key"} 90
kvstack_consumer_messages_total{outcome="stale",queue="add_key"} 5
kvstack_consumer_messages_total{outcome="applied",queue="del_key"} 5
# HELP kvstack_http_requests_in_flight In flight.
# TYPE kvstack_http_requests_in_flight gauge
kvstack_http_requests_in_flight 3
# HELP kvstack_consumer_lag_seconds Lag.
# TYPE kvstack_consumer_lag_seconds histogram
kvstack_consumer_lag_seconds_bucket{queue="add_key",le="0.05"} 40
kvstack_consumer_lag_seconds_bucket{queue="add_key",le="0.1"} 90
kvstack_consumer_lag_seconds_bucket{queue="add_key",le="+Inf"} 100
kvstack_consumer_lag_seconds_sum{queue="add_key"} 7
kvstack_consumer_lag_seconds_count{queue="add_key"} 100
kvstack_consumer_lag_seconds_bucket{queue="del_key",le="0.05"} 10
kvstack_consumer_lag_seconds_bucket{queue="del_key",le="0.1"} 10
kvstack_consumer_lag_seconds_bucket{queue="del_key",le="+Inf"} 10
kvstack_consumer_lag_seconds_sum{queue="del_key"} 0.2
kvstack_consumer_lag_seconds_count{queue="del_key"} 10
`

func TestFamilies(t *testing.T) {
	f, err := ParseMetrics(exposition)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		want float64
	}{
		{"kvstack_consumer_messages_total", 100},
		{"kvstack_http_requests_in_flight", 3},
		{"absent_total", 0},
	}
	for _, tt := range tests {
		if got := f.Sum(tt.name); got != tt.want {
			t.Errorf("Sum(%s) = %v, want %v", tt.name, got, tt.want)
		}
	}
	b := f.Buckets("kvstack_consumer_lag_seconds")
	want := map[float64]float64{0.05: 50, 0.1: 100, math.Inf(1): 110}
	for le, n := range want {
		if b[le] != n {
			t.Errorf("bucket le=%v = %v, want %v (all: %v)", le, b[le], n, b)
		}
	}
	if f.Buckets("kvstack_http_requests_in_flight") != nil {
		t.Error("Buckets of a gauge: not nil")
	}
	if _, err := ParseMetrics("not metrics {"); err == nil {
		t.Error("ParseMetrics of garbage: no error")
	}
}

func TestHist(t *testing.T) {
	before := map[float64]float64{0.05: 10, 0.1: 10, 0.25: 10, math.Inf(1): 10}
	after := map[float64]float64{0.05: 60, 0.1: 108, 0.25: 109, math.Inf(1): 110}
	h := HistDelta(before, after)
	if got := h.Total(); got != 100 {
		t.Fatalf("Total = %v, want 100", got)
	}
	tests := []struct {
		q, want float64
	}{
		{0.5, 0.05},        // the 50th of 100 is the last of the first bucket
		{0.74, 0.075},      // halfway through (0.05, 0.1]
		{0.99, 0.25},       // the 99th is the one observation in (0.1, 0.25]
		{1, 0.25},          // in +Inf: the highest finite bound
		{0.25, 0.05 * 0.5}, // interpolated from 0
	}
	for _, tt := range tests {
		if got := h.Quantile(tt.q); math.Abs(got-tt.want) > 1e-9 {
			t.Errorf("Quantile(%v) = %v, want %v", tt.q, got, tt.want)
		}
	}
	if got := h.FractionWithin(0.1); got != 0.98 {
		t.Errorf("FractionWithin(0.1) = %v, want 0.98", got)
	}
	if got := h.FractionWithin(0.2); got != 0 {
		t.Errorf("FractionWithin of a bound that is no bucket's = %v, want 0", got)
	}
	if got := (Hist{}).Quantile(0.99); got != 0 {
		t.Errorf("Quantile of nothing = %v, want 0", got)
	}
}
