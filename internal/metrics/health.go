package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kvstack/kvstack/internal/health"
)

// RegisterHealth exports, as report gives it at each scrape, what the
// process can do: each capability's state and whether it is ready.
func RegisterHealth(reg prometheus.Registerer, report func() health.Report) {
	reg.MustRegister(healthCollector{
		capability: prometheus.NewDesc("kvstack_capability",
			"State of one thing the process can do, as its last dependency checks found: 2 ok, 1 degraded (served in part or by a fallback), 0 down. API: read, write, list; consumer: apply.",
			[]string{"capability"}, nil),
		ready: prometheus.NewDesc("kvstack_ready",
			"1 while the process is ready (/readyz 200: some capability is not down), 0 while starting, draining or when every capability is down.",
			nil, nil),
		report: report,
	})
}

type healthCollector struct {
	capability, ready *prometheus.Desc
	report            func() health.Report
}

func (c healthCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.capability
	ch <- c.ready
}

func (c healthCollector) Collect(ch chan<- prometheus.Metric) {
	r := c.report()
	for _, cap := range r.Capabilities {
		ch <- prometheus.MustNewConstMetric(c.capability, prometheus.GaugeValue, float64(cap.State), cap.Name)
	}
	ready := 0.0
	if r.Ready() {
		ready = 1
	}
	ch <- prometheus.MustNewConstMetric(c.ready, prometheus.GaugeValue, ready)
}
