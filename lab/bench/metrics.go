package bench

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"sort"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Families is one scrape of a process's /metrics, parsed.
type Families map[string]*dto.MetricFamily

// ParseMetrics parses the Prometheus text exposition format.
func ParseMetrics(text string) (Families, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	return fams, nil
}

// scrape fetches and parses a process's /metrics.
func scrape(ctx context.Context, url string) (Families, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	// Plain text: gzip would cost the measured process CPU on every poll.
	req.Header.Set("Accept-Encoding", "identity")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: status %d", url, resp.StatusCode)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	return ParseMetrics(string(b))
}

// Sum adds up every series of a counter, gauge or untyped metric (all
// label values); 0 when the metric is absent.
func (f Families) Sum(name string) float64 {
	mf, ok := f[name]
	if !ok {
		return 0
	}
	var sum float64
	for _, m := range mf.GetMetric() {
		switch {
		case m.Counter != nil:
			sum += m.GetCounter().GetValue()
		case m.Gauge != nil:
			sum += m.GetGauge().GetValue()
		case m.Untyped != nil:
			sum += m.GetUntyped().GetValue()
		}
	}
	return sum
}

// Buckets returns a histogram's cumulative counts by upper bound, summed
// over its series (all label values), +Inf included; nil when absent.
func (f Families) Buckets(name string) map[float64]float64 {
	mf, ok := f[name]
	if !ok || mf.GetType() != dto.MetricType_HISTOGRAM {
		return nil
	}
	out := map[float64]float64{}
	for _, m := range mf.GetMetric() {
		h := m.GetHistogram()
		inf := false
		for _, b := range h.GetBucket() {
			out[b.GetUpperBound()] += float64(b.GetCumulativeCount())
			inf = inf || math.IsInf(b.GetUpperBound(), 1)
		}
		if !inf { // the +Inf bucket is the count
			out[math.Inf(1)] += float64(h.GetSampleCount())
		}
	}
	return out
}

// Hist is the change of a cumulative histogram between two scrapes.
type Hist struct {
	Bounds []float64 // ascending, +Inf last
	Counts []float64 // cumulative
}

// HistDelta is what a histogram (Families.Buckets) gained from before to
// after.
func HistDelta(before, after map[float64]float64) Hist {
	var h Hist
	for le := range after {
		h.Bounds = append(h.Bounds, le)
	}
	sort.Float64s(h.Bounds)
	for _, le := range h.Bounds {
		h.Counts = append(h.Counts, after[le]-before[le])
	}
	return h
}

// Total is the number of observations.
func (h Hist) Total() float64 {
	if len(h.Counts) == 0 {
		return 0
	}
	return h.Counts[len(h.Counts)-1]
}

// Quantile interpolates linearly inside the bucket, as Prometheus'
// histogram_quantile does; in the +Inf bucket it is the highest finite
// bound, all that is known.
func (h Hist) Quantile(q float64) float64 {
	total := h.Total()
	if total == 0 {
		return 0
	}
	rank := q * total
	lower, prev := 0.0, 0.0
	for i, le := range h.Bounds {
		if h.Counts[i] >= rank {
			if math.IsInf(le, 1) {
				return lower
			}
			return lower + (le-lower)*(rank-prev)/(h.Counts[i]-prev)
		}
		lower, prev = le, h.Counts[i]
	}
	return lower
}

// FractionWithin is the share of observations ≤ bound, which must be one
// of the histogram's bucket bounds (else 0: nothing exact is known).
func (h Hist) FractionWithin(bound float64) float64 {
	if h.Total() == 0 {
		return 0
	}
	for i, le := range h.Bounds {
		if le == bound {
			return h.Counts[i] / h.Total()
		}
	}
	return 0
}
