package bench

import (
	"context"
	"fmt"
	"time"
)

// 5. The same consumer with batch size 1, run by the harness.
func (h *harness) applyUnbatched(ctx context.Context) (*Section, error) {
	o := h.o
	sec := &Section{Title: "The same consumer with batch size 1",
		Setup: fmt.Sprintf("bin/consumer started by the harness with the stack consumer's environment and CONSUMER_BATCH_SIZE=1 (prefetch then 2) on %s, the stack's consumer stopped, draining %d messages of fresh keys (%s sampled, as shipped).", o.port(10), o.Apply1N, shippedShare())}
	table := NewCPUTable("apply, batch size 1", "message", cpuRowsApply...)
	var rates []float64
	for r := range o.Reps {
		if err := h.waitQuiet(ctx); err != nil {
			return sec, err
		}
		d, err := h.drainChild(ctx, "consumer-batch1", o.Apply1N, productionRatio, "CONSUMER_BATCH_SIZE=1")
		if err != nil {
			return sec, err
		}
		Log("apply batch-1 run %d: %.0f msg/s over %.0f; %s", r+1, d.rate, d.n, fmtPerOp(d.perOp))
		rates = append(rates, d.rate)
		table.Add("batch size 1", d.perOp)
	}
	sec.CPU = []*CPUTable{table}
	sec.Figures = []Figure{{"consumer apply, batch size 1", "msg/s", rates}}
	sec.Targets = []Target{AtLeast("batched apply ÷ batch size 1 (throughput)", Ratio(h.applyRate, Summarise(rates).Median), 5, "%.1f ×")}
	return sec, h.startConsumer(ctx)
}

// lagBound is issue 15's bound on the end-to-end lag's p99; it is one of
// kvstack_consumer_lag_seconds' bucket bounds, so whether 99 % of the
// applies were within it is counted, not interpolated.
const lagBound = 0.1

// estimateRates measures the PUT rate when the put scenario did not run
// (-only lag,wait): a closed loop of PUTs with the consumer running; an
// apply rate not measured is taken to be no lower.
func (h *harness) estimateRates(ctx context.Context) error {
	if h.putRate == 0 {
		if h.consumerStopped {
			if err := h.startConsumer(ctx); err != nil {
				return err
			}
		}
		res := Closed(ctx, h.o.Conns, h.o.Dur, 0, h.putOp("bench:estimate:"))
		Log("PUT rate, estimated: %s", res)
		h.putRate = res.Rate()
	}
	if h.applyRate == 0 {
		h.applyRate = h.putRate
	}
	return nil
}

// 6. End-to-end lag at half the sustained write rate.
func (h *harness) lag(ctx context.Context) (*Section, error) {
	o := h.o
	if err := h.estimateRates(ctx); err != nil {
		return nil, err
	}
	sustained := min(h.putRate, h.applyRate)
	rate := sustained / 2
	sec := &Section{Title: "End-to-end lag (accept → applied)",
		Setup: fmt.Sprintf("PUTs through nginx at a fixed %.0f/s (half the sustained write rate: the lower of the PUT accept rate, %.0f/s, and the apply rate, %.0f/s) for %s from %d connections, the stack's consumer running; "+
			"lag from the consumer's kvstack_consumer_lag_seconds histogram (apply time minus the accept timestamp), the difference of two scrapes around the run; p50 and p99 interpolated within their bucket, the share within %.0f ms counted.",
			rate, h.putRate, h.applyRate, o.LagDur, o.Conns, lagBound*1000)}
	if rate <= 0 {
		return sec, fmt.Errorf("no sustained rate measured")
	}
	res, hist, err := h.lagRun(ctx, rate, o.Conns, h.putOp("bench:lag:"))
	if err != nil {
		return sec, err
	}
	Log("lag: PUT %s; lag observations %.0f p50 %.1fms p99 %.1fms, ≤%.0fms %.4f", res, hist.Total(), hist.Quantile(.5)*1000, hist.Quantile(.99)*1000, lagBound*1000, hist.FractionWithin(lagBound))
	sec.Figures = append([]Figure{
		{"PUT rate achieved", "req/s", []float64{res.Rate()}},
		{"PUT p99 (accept)", "ms", []float64{ms(res.Quantile(.99))}},
	}, lagFigures(hist)...)
	sec.Notes = append(sec.Notes, fmt.Sprintf("%.0f lag observations; one run (a fixed-rate run is its own repetition of %s)", hist.Total(), o.LagDur))
	sec.Targets = []Target{LagTarget("end-to-end lag p99 at half the sustained rate", hist, lagBound)}
	return sec, nil
}

// LagTarget is met when at least 99 % of the applies took at most bound
// (a bucket bound of the histogram): p99 < bound, counted.
func LagTarget(name string, hist Hist, bound float64) Target {
	within := hist.FractionWithin(bound)
	return Target{Name: name,
		Got:  fmt.Sprintf("%.0f ms (%.2f %% within %.0f ms)", hist.Quantile(.99)*1000, within*100, bound*1000),
		Want: fmt.Sprintf("< %.0f ms", bound*1000), Met: hist.Total() > 0 && within >= 0.99}
}

func lagFigures(hist Hist) []Figure {
	return []Figure{
		{"lag p50", "ms", []float64{hist.Quantile(.5) * 1000}},
		{"lag p99", "ms", []float64{hist.Quantile(.99) * 1000}},
		{fmt.Sprintf("share applied within %.0f ms", lagBound*1000), "share", []float64{hist.FractionWithin(lagBound)}},
	}
}

// lagRun runs op at rate through the edge for LagDur with the stack's
// consumer running, and returns the load's result and the lag histogram
// of the same time (the queues empty before and after).
func (h *harness) lagRun(ctx context.Context, rate float64, workers int, op Op) (Result, Hist, error) {
	if h.consumerStopped {
		if err := h.startConsumer(ctx); err != nil {
			return Result{}, Hist{}, err
		}
	}
	url := "http://127.0.0.1:" + h.o.ConsumerAdminPort + "/metrics"
	if err := h.waitEmpty(ctx, 2*time.Minute); err != nil {
		return Result{}, Hist{}, err
	}
	before, err := scrape(ctx, url)
	if err != nil {
		return Result{}, Hist{}, err
	}
	res := Open(ctx, workers, h.o.LagDur, rate, op)
	if err := h.waitEmpty(ctx, 2*time.Minute); err != nil {
		return res, Hist{}, err
	}
	time.Sleep(500 * time.Millisecond) // the last batch's metrics
	after, err := scrape(ctx, url)
	if err != nil {
		return res, Hist{}, err
	}
	const lagMetric = "kvstack_consumer_lag_seconds"
	return res, HistDelta(before.Buckets(lagMetric), after.Buckets(lagMetric)), nil
}

// 7. PUT ?wait=applied at half the sustained PUT rate (issue 13).
func (h *harness) waitApplied(ctx context.Context) (*Section, error) {
	o := h.o
	if err := h.estimateRates(ctx); err != nil {
		return nil, err
	}
	rate := h.putRate / 2
	sec := &Section{Title: "PUT ?wait=applied through nginx",
		Setup: fmt.Sprintf("PUT /api?wait=applied of fresh keys through nginx at a fixed %.0f/s (half the sustained PUT rate, %.0f/s) for %s from %d connections (each request holds one for its wait: enough for a quarter of a second's requests), the stack's consumer running; a 200 (applied, or superseded) is a success, a 202 (the wait's bound passed) is not. "+
			"Latency of the successes beside the end-to-end lag of the same run (kvstack_consumer_lag_seconds, as above).", rate, h.putRate, o.LagDur, waitConns(rate, o.Conns))}
	if rate <= 0 {
		return sec, fmt.Errorf("no PUT rate measured")
	}
	conns := waitConns(rate, o.Conns)
	tokens, err := h.clientTokens(conns)
	if err != nil {
		return sec, err
	}
	cs := NewClients(tokens, o.EdgeTrust)
	defer cs.Close()
	res, hist, err := h.lagRun(ctx, rate, conns, h.putWith(cs, o.Nginx, "bench:wait:", "wait=applied"))
	if err != nil {
		return sec, err
	}
	Log("wait: PUT?wait=applied %s; lag p50 %.1fms p99 %.1fms", res, hist.Quantile(.5)*1000, hist.Quantile(.99)*1000)
	sec.Figures = append([]Figure{
		{"rate achieved (200s)", "req/s", []float64{res.Rate()}},
		{"PUT ?wait=applied p50", "ms", []float64{ms(res.Quantile(.5))}},
		{"PUT ?wait=applied p99", "ms", []float64{ms(res.Quantile(.99))}},
	}, lagFigures(hist)...)
	if res.Errors > 0 {
		sec.Notes = append(sec.Notes, fmt.Sprintf("%d requests did not answer 200 (statuses %v)", res.Errors, res.Status))
	}
	sec.Targets = []Target{
		Reported("PUT ?wait=applied p99 ÷ end-to-end lag p99 of the same run", Ratio(ms(res.Quantile(.99)), hist.Quantile(.99)*1000), fmtTimes),
	}
	return sec, nil
}

// waitConns is how many connections offer rate requests per second that
// each wait for their write to be applied: a quarter of a second's worth
// (the lag is tens of milliseconds), at least conns, at most 500 (the
// loopback source addresses of NewClients).
func waitConns(rate float64, conns int) int {
	return min(max(conns, int(rate/4)+1), 500)
}

// waitEmpty waits until both work queues are empty.
func (h *harness) waitEmpty(ctx context.Context, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		a, err1 := h.pub.depth(h.cons.RabbitMQ.QueueAdd)
		d, err2 := h.pub.depth(h.cons.RabbitMQ.QueueDel)
		if err1 == nil && err2 == nil && a == 0 && d == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("the queues were not drained within %s", limit)
}
