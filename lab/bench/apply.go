package bench

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"time"
)

// drainer is one column of the apply scenario: a consumer draining n
// messages that the harness publishes first.
type drainer struct {
	name string
	// sampled is the share of the messages whose trace context says
	// "sampled", as the API's sampler would have decided.
	sampled float64
	// run fills the queue and drains it; the CPU is measured from the
	// first message handled to the last.
	run func(ctx context.Context, n int, profile bool) (drained, error)
}

// drained is one drain: its rate and each process's CPU per message.
type drained struct {
	rate  float64
	n     float64 // messages handled while measured
	perOp map[string]float64
}

// applyRoles are the processes of a drain beside the consumer.
var applyRoles = []string{"jaeger", "postgres", "redis", "rabbitmq"}

// 4. The consumer draining a backlog, as shipped and as variants, beside a
// raw pipeline doing the same work (the reference), a raw batched upsert
// and a raw consume (baselines of throughput).
func (h *harness) apply(ctx context.Context) (*Section, error) {
	o := h.o
	batch := h.cons.Consumer.BatchSize
	prefetch := h.cons.RabbitMQ.PrefetchFor(batch)
	sec := &Section{ID: "apply", Title: titleApply,
		Setup: fmt.Sprintf("Each run fills %s with %d messages of fresh keys, as the API publishes them (persistent, the trace context in the headers, sampled as the API's sampler would have: %s as shipped, all of them at 100 %% sampling), then a consumer drains them, timed and measured from its first handled message to the last (its messages counter on /metrics, polled every 100 ms). "+
			"kvstack: the stack's consumer (batch size %d, prefetch %d). Variants: bin/consumer run by the harness with the stack consumer's environment and one setting changed: %s. "+
			"Reference: a raw pipeline, `kvbench pipeline` (amqp091-go, the same prefetch, batches of %d or what %s brings, the bodies decoded with encoding/json, one transaction with the consumer's upsert statement on a scratch kv_store (schema kvbench) and one pg_notify of the batch's versions, one pipelined EVALSHA of the cache's compare-and-set script per message through go-redis without tracing, one multiple-ack per batch), from a scratch durable %s queue (%s). "+
			"Baselines of throughput: the consumer's upsert statement alone (unnest of %d rows, one transaction each) from 1 connection, and a plain amqp091-go consumer doing no work (manual ack, prefetch %d, multiple-ack every %d).",
			h.cons.RabbitMQ.QueueAdd, o.ApplyN, shippedShare(), batch, prefetch, consumerVariantList(), batch, h.cons.Consumer.BatchWait, h.cons.RabbitMQ.QueueType, scratchQueue, batch, prefetch, batch)}
	if err := scratchStore(ctx, h.pool); err != nil {
		return sec, err
	}
	// The PUT scenario's backlog is applied first, unmeasured: each run
	// then drains messages of its own sampling.
	if err := h.startConsumer(ctx); err != nil {
		return sec, err
	}
	if err := h.waitEmpty(ctx, 10*time.Minute); err != nil {
		return sec, err
	}
	table := NewCPUTable("apply", "message", cpuRowsApply...)
	rates, err := h.alternateDrains(ctx, table, h.drainers(prefetch, batch))
	if err != nil {
		return sec, err
	}
	base, err := h.applyBaselines(ctx, prefetch, batch)
	if err != nil {
		return sec, err
	}
	h.applyRate = Summarise(rates[colKVStack]).Median
	sec.CPU = []*CPUTable{table}
	sec.Figures = applyFigures(rates, base, prefetch, batch)
	sec.Targets = applyTargets(table, rates, base)
	return sec, h.startConsumer(ctx)
}

// consumerVariants are the consumer's variants: the control, 100 %
// sampling and tracing off (the access log and auth are the API's alone).
var consumerVariants = slices.DeleteFunc(slices.Clone(apiVariants), func(v variant) bool {
	return v.name != colHarness && v.name != colFull && v.name != colUntraced
})

func consumerVariantList() string {
	s := ""
	for i, v := range consumerVariants {
		if i > 0 {
			s += "; "
		}
		s += fmt.Sprintf("%s (%v)", v.name, v.env)
	}
	return s
}

// drainers are kvstack, its variants and the raw pipeline.
func (h *harness) drainers(prefetch, batch int) []drainer {
	out := []drainer{{name: colKVStack, sampled: productionRatio, run: func(ctx context.Context, n int, profile bool) (drained, error) {
		return h.drainStack(ctx, n, productionRatio, profile)
	}}}
	for _, v := range consumerVariants {
		sampled := 1.0
		switch v.name {
		case colHarness:
			sampled = productionRatio
		case colUntraced:
			sampled = 0
		}
		out = append(out, drainer{name: v.name, sampled: sampled, run: func(ctx context.Context, n int, _ bool) (drained, error) {
			return h.drainChild(ctx, "consumer-"+v.name, n, sampled, v.env...)
		}})
	}
	if bin := h.o.CompareConsumer; bin != "" {
		out = append(out, drainer{name: colCompare, sampled: productionRatio, run: func(ctx context.Context, n int, _ bool) (drained, error) {
			return h.drainBinary(ctx, "consumer-compared", bin, n, productionRatio)
		}})
	}
	return append(out, drainer{name: colReference, run: func(ctx context.Context, n int, _ bool) (drained, error) {
		return h.drainPipeline(ctx, n, prefetch, batch)
	}})
}

// alternateDrains runs each drainer in turn, Reps times (runOrder:
// forward, then backward); a run that someone else's `make up` disturbed
// (restarting the stack's consumer between the steps) is run again, once.
func (h *harness) alternateDrains(ctx context.Context, table *CPUTable, ds []drainer) (map[string][]float64, error) {
	rates := map[string][]float64{}
	for r := range h.o.Reps {
		for _, i := range runOrder(len(ds), r) {
			d := ds[i]
			var (
				got drained
				err error
			)
			for try := range 2 {
				if err = h.waitQuiet(ctx); err != nil {
					return rates, err
				}
				if got, err = d.run(ctx, h.o.ApplyN, r == 0 && try == 0); err == nil {
					break
				}
				Log("apply run %d, %s: %v; again", r+1, d.name, err)
			}
			if err != nil {
				return rates, fmt.Errorf("%s: %w", d.name, err)
			}
			Log("apply run %d: %s %.0f msg/s over %.0f; %s", r+1, d.name, got.rate, got.n, fmtPerOp(got.perOp))
			table.Add(d.name, got.perOp)
			rates[d.name] = append(rates[d.name], got.rate)
		}
	}
	return rates, nil
}

// drainStack stops the stack's consumer, fills its queue with n messages,
// starts it and measures its drain.
func (h *harness) drainStack(ctx context.Context, n int, sampled float64, profile bool) (drained, error) {
	if err := h.stopConsumer(ctx); err != nil {
		return drained{}, err
	}
	got, err := h.fill(ctx, h.cons.RabbitMQ.QueueAdd, n, sampled)
	if err != nil {
		return drained{}, err
	}
	if err := h.startConsumer(ctx); err != nil {
		return drained{}, err
	}
	wait := func() {}
	if profile {
		wait = h.profile(ctx, h.o.ConsumerAdminPort, "consumer-apply-cpu", 4)
	}
	procs := func(ctx context.Context) ([]Proc, error) {
		return h.stackProcs(ctx, append([]string{"consumer"}, applyRoles...)...)
	}
	d, err := h.drain(ctx, h.o.ConsumerAdminPort, consumerCounter, got, 5*time.Minute, procs)
	wait()
	return d, err
}

const consumerCounter = "kvstack_consumer_messages_total"

// drainChild fills the add queue with n messages, runs bin/consumer with
// the stack consumer's environment plus env on the harness's own port
// until it has handled them, stops it, and returns its drain. The stack's
// consumer must be stopped.
func (h *harness) drainChild(ctx context.Context, name string, n int, sampled float64, env ...string) (drained, error) {
	return h.drainBinary(ctx, name, filepath.Join(h.stack.s.BinDir, "consumer"), n, sampled, env...)
}

// drainBinary is drainChild with another build of the consumer.
func (h *harness) drainBinary(ctx context.Context, name, bin string, n int, sampled float64, env ...string) (drained, error) {
	o := h.o
	// Stopped again each time: someone else's `make up` may have restarted it.
	if err := h.stopConsumer(ctx); err != nil {
		return drained{}, err
	}
	got, err := h.fill(ctx, h.cons.RabbitMQ.QueueAdd, n, sampled)
	if err != nil {
		return drained{}, err
	}
	log := filepath.Join(h.dir, name+".log")
	c, err := h.spawn(name, log, h.stack.env("consumer", append([]string{
		"KV_CONSUMER_ADDR=" + o.port(10), "KV_ADMIN_ADDR=" + o.port(20), "KV_INSTANCE_ID=kvbench-" + name}, env...)...), bin)
	if err != nil {
		return drained{}, err
	}
	defer c.stop(20 * time.Second)
	d, err := h.drain(ctx, portOf(o.port(20)), consumerCounter, got, 5*time.Minute, h.childProcs(c, "consumer", applyRoles...))
	if err != nil {
		return d, fmt.Errorf("%w (log %s)", err, log)
	}
	return d, nil
}

// childProcs are a child of the harness's in role, and the stack's
// processes of roles.
func (h *harness) childProcs(c *child, role string, roles ...string) func(context.Context) ([]Proc, error) {
	return func(ctx context.Context) ([]Proc, error) {
		procs, err := h.stackProcs(ctx, roles...)
		return append([]Proc{{role, c.pid()}}, procs...), err
	}
}

// drain waits until the process on port has handled total messages (its
// counter, summed over its series, counts from 0 at start) and returns its
// rate from its first handled message to the last, and the CPU of procs
// over the same time per message handled in it.
func (h *harness) drain(ctx context.Context, port, counter string, total int, limit time.Duration, procs func(context.Context) ([]Proc, error)) (drained, error) {
	return h.drainAll(ctx, []string{port}, counter, total, limit, procs)
}

// drainAll is drain of the processes on ports together (several consumers
// of one queue): their counters' sum.
func (h *harness) drainAll(ctx context.Context, ports []string, counter string, total int, limit time.Duration, procs func(context.Context) ([]Proc, error)) (drained, error) {
	deadline := time.Now().Add(limit)
	var (
		t0 time.Time
		c0 float64
		w  *cpuWatch
	)
	for time.Now().Before(deadline) {
		n, err := sumCounters(ctx, ports, counter)
		now := time.Now()
		if err == nil {
			if n > 0 && w == nil {
				p, err := procs(ctx)
				if err != nil {
					return drained{}, err
				}
				if w, err = startCPU(p); err != nil {
					return drained{}, err
				}
				t0, c0 = now, n
			}
			if n >= float64(total) {
				return finishDrain(w, n-c0, now.Sub(t0))
			}
		}
		select {
		case <-ctx.Done():
			return drained{}, ctx.Err()
		case <-time.After(100 * time.Millisecond): // ±0.1 s on a drain of many seconds
		}
	}
	return drained{}, fmt.Errorf("the consumers on :%v did not handle %d messages within %s", ports, total, limit)
}

// sumCounters is the sum of counter over its series on each process's
// /metrics.
func sumCounters(ctx context.Context, ports []string, counter string) (float64, error) {
	var n float64
	for _, port := range ports {
		fams, err := scrape(ctx, "http://127.0.0.1:"+port+"/metrics")
		if err != nil {
			return 0, err
		}
		n += fams.Sum(counter)
	}
	return n, nil
}

func finishDrain(w *cpuWatch, n float64, took time.Duration) (drained, error) {
	if took <= 0 || n <= 0 {
		return drained{}, fmt.Errorf("drained before the first observation: raise the message count")
	}
	u, err := w.end()
	if err != nil {
		return drained{}, err
	}
	perOp, err := u.PerOp(n)
	return drained{rate: n / took.Seconds(), n: n, perOp: perOp}, err
}

// applyBaseline is the throughput of the raw parts, in the same run.
type applyBaseline struct{ upsert, consume []float64 }

// applyBaselines runs the raw upsert and the raw consume, Reps times.
func (h *harness) applyBaselines(ctx context.Context, prefetch, batch int) (applyBaseline, error) {
	var b applyBaseline
	for r := range h.o.Reps {
		if err := h.waitQuiet(ctx); err != nil {
			return b, err
		}
		up, err := rawUpsert(ctx, h.pool, 1, batch, h.o.Dur/2, h.value, r)
		if err != nil {
			return b, fmt.Errorf("raw upsert: %w", err)
		}
		_, _ = h.pool.Exec(ctx, `TRUNCATE kvbench.kv_store`)
		cons, err := h.consumeRef(ctx, h.o.ApplyN, prefetch, batch)
		if err != nil {
			return b, err
		}
		Log("apply baselines run %d: raw upsert %.0f rows/s | raw consume %.0f msg/s", r+1, up, cons)
		b.upsert, b.consume = append(b.upsert, up), append(b.consume, cons)
	}
	return b, nil
}

func applyFigures(rates map[string][]float64, b applyBaseline, prefetch, batch int) []Figure {
	var out []Figure
	for _, name := range []string{colKVStack, colHarness, colFull, colUntraced, colCompare, colReference} {
		if r, ok := rates[name]; ok {
			out = append(out, Figure{name, "msg/s", r})
		}
	}
	return append(out, Figure{"raw batched upsert, 1 connection", "rows/s", b.upsert},
		Figure{fmt.Sprintf("raw consume + ack (prefetch %d, multiple-ack every %d)", prefetch, batch), "msg/s", b.consume})
}

func applyTargets(t *CPUTable, rates map[string][]float64, b applyBaseline) []Target {
	rate := Summarise(rates[colKVStack]).Median
	return []Target{
		AtMostRuns("apply: consumer's CPU per message ÷ the raw pipeline's (same queue type), as shipped",
			t.Runs("consumer", colKVStack), t.Runs("consumer", colReference), 1.5, fmtTimes),
		Reported("apply: tracing's share of the consumer's CPU, as shipped (run by the harness, as the variants) (%)",
			percent(TracingShare(t.Median("consumer", colHarness), t.Median("consumer", colUntraced))), "%.1f"),
		Reported("apply: tracing's share of the consumer's CPU, 100 % sampling (%)",
			percent(TracingShare(t.Median("consumer", colFull), t.Median("consumer", colUntraced))), "%.1f"),
		Reported("apply: CPU per message of every process ÷ the raw pipeline's", Ratio(t.Median(rowTotal, colKVStack), t.Median(rowTotal, colReference)), fmtTimes),
		Reported("apply throughput ÷ raw batched upsert", Ratio(rate, Summarise(b.upsert).Median), fmtTimes),
		Reported("apply throughput ÷ raw consume + ack", Ratio(rate, Summarise(b.consume).Median), fmtTimes),
		Reported("apply throughput ÷ the raw pipeline's", Ratio(rate, Summarise(rates[colReference]).Median), fmtTimes),
	}
}

func portOf(addr string) string {
	for i := len(addr) - 1; i >= 0; i-- {
		if addr[i] == ':' {
			return addr[i+1:]
		}
	}
	return addr
}
