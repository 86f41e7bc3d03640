//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"testing"
	"time"
)

// jaegerMetrics is the part of Jaeger's /api/metrics/* answer the test reads.
type jaegerMetrics struct {
	Name    string `json:"name"`
	Metrics []struct {
		Labels []struct {
			Name  string `json:"name"`
			Value string `json:"value"`
		} `json:"labels"`
		MetricPoints []struct {
			GaugeValue struct {
				DoubleValue any `json:"doubleValue"` // a number, or "NaN"
			} `json:"gaugeValue"`
		} `json:"metricPoints"`
	} `json:"metrics"`
}

// points counts the metric points that hold a number.
func (m jaegerMetrics) points() int {
	n := 0
	for _, s := range m.Metrics {
		for _, p := range s.MetricPoints {
			if _, ok := p.GaugeValue.DoubleValue.(float64); ok {
				n++
			}
		}
	}
	return n
}

// Jaeger's Monitor tab: after traffic, its metrics API answers RED figures
// for both services from the spanmetrics Prometheus scraped (the API's
// SERVER spans, the consumer's CONSUMER spans).
func TestJaegerMonitorTab(t *testing.T) {
	h := newHarness(t)
	jaeger := "http://" + h.addr("KV_JAEGER_UI_PORT")
	h.mustAnswer(t, "Jaeger", jaeger+"/api/services")
	driveTraffic(t, h)
	for _, c := range []struct{ service, kind string }{{"kv-api", "server"}, {"kv-consumer", "consumer"}} {
		for _, path := range []string{"/api/metrics/calls", "/api/metrics/latencies", "/api/metrics/errors"} {
			t.Run(c.service+path, func(t *testing.T) {
				q := url.Values{
					"service": {c.service}, "spanKind": {c.kind}, "groupByOperation": {"true"},
					"lookback": {"300000"}, "step": {"15000"}, "ratePer": {"60000"},
				}
				if path == "/api/metrics/latencies" {
					q.Set("quantile", "0.95")
				}
				// The connector flushes every 15 s and Prometheus scrapes
				// every 5 s: give it a few rounds.
				eventually(t, 90*time.Second, func() string {
					r, err := h.try(http.MethodGet, jaeger+path+"?"+q.Encode(), nil)
					if err != nil || r.status != http.StatusOK {
						return fmt.Sprintf("GET %s: %v %d %.300s", path, err, r.status, r.body)
					}
					var m jaegerMetrics
					if err := json.Unmarshal(r.body, &m); err != nil {
						return fmt.Sprintf("%s: %v: %.300s", path, err, r.body)
					}
					if path != "/api/metrics/errors" && m.points() == 0 {
						return fmt.Sprintf("%s for %s: no figure yet: %.300s", path, c.service, r.body)
					}
					if len(m.Metrics) == 0 {
						return fmt.Sprintf("%s for %s: no series yet: %.300s", path, c.service, r.body)
					}
					return ""
				})
			})
		}
	}
}
