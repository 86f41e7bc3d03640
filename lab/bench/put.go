package bench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// putOp PUTs fresh keys with the value through the edge.
func (h *harness) putOp(prefix string) Op { return h.putTo(h.o.Nginx, prefix, "") }

// putTo PUTs fresh keys with the value to base's /api?query, ok on a 202
// (or a 200 when the query waits for the write to be applied).
func (h *harness) putTo(base, prefix, query string) Op {
	return h.putWith(h.clients, base, prefix, query)
}

// putWith is putTo with the workers' clients cs.
func (h *harness) putWith(cs Clients, base, prefix, query string) Op {
	var seq atomic.Int64
	want := http.StatusAccepted
	if query != "" {
		want = http.StatusOK
		query = "?" + query
	}
	return func(ctx context.Context, w int, _ int64) (int, bool) {
		n := seq.Add(1)
		body := `{"key":"` + prefix + fmt.Sprint(n) + `","value":"` + h.value + `"}`
		req, _ := http.NewRequestWithContext(ctx, http.MethodPut, base+"/api"+query, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		code, err := cs.Do(w, req)
		return code, err == nil && code == want
	}
}

// 3. PUT accepted: kvstack and its variants beside a handler that answers
// after one confirmed publish (the reference) and a raw publish.
func (h *harness) put(ctx context.Context) (*Section, error) {
	o := h.o
	rc := h.cons.RabbitMQ
	sec := &Section{ID: "put", Title: titlePut,
		Setup: fmt.Sprintf("%d connections, PUT /api of fresh keys, %d-byte values, with the stack's consumer stopped (the accept path alone; the messages it leaves are applied before the next scenario). "+
			"Variants as for the GET hit. "+
			"Reference: the same nginx in front of two minimal Go handlers (one process per replica) that read the PUT body, publish one persistent message of the app's message size to a scratch durable %s queue (%s, purged after each run) "+
			"and answer 202 once the broker confirmed it (one amqp091-go connection each with RABBITMQ_PUBLISH_CHANNELS confirm-mode channels, each given back as soon as the message is written; no tracing). "+
			"Raw publish: amqp091-go from the harness, the same messages, one confirm-mode channel with 256 unconfirmed in flight, to the same queue (RabbitMQ's CPU only).",
			o.Conns, o.ValueLen, rc.QueueType, scratchQueue)}
	if err := h.stopConsumer(ctx); err != nil {
		return sec, err
	}
	if err := h.pub.declareScratch(scratchQueue, rc.QueueType); err != nil {
		return sec, fmt.Errorf("scratch queue: %w", err)
	}
	defer h.pub.deleteQueue(scratchQueue)
	systems, stop, err := h.putSystems(ctx, sec)
	if err != nil {
		return sec, err
	}
	defer stop()
	table, closed := NewCPUTable("PUT accepted", "request", cpuRowsHTTP...), NewCPUTable("PUT accepted", "request", cpuRowsHTTP...)
	a, err := h.judgeAtRate(ctx, "put", sec, table, closed, systems)
	if err != nil {
		return sec, err
	}
	// The sustained PUT rate, which the lag scenario halves: kvstack's
	// closed loop.
	h.putRate = a.capacity(colKVStack)
	a.tableTitles("PUT accepted", o, table, closed)
	sec.CPU = []*CPUTable{table, closed}
	sec.Figures = a.figures("req/s", colKVStack, colReference)
	sec.Targets = putTargets(table, a)
	return sec, nil
}

// putSystems starts the variants and the reference, and makes the raw
// publish; stop stops them.
func (h *harness) putSystems(ctx context.Context, sec *Section) ([]system, func(), error) {
	variants, stopVariants, err := h.startVariants(ctx, "put", func(base string) Op { return h.putTo(base, "bench:put:", "") })
	if err != nil {
		return nil, nil, err
	}
	ref, err := h.startPutRef(ctx, sec)
	if err != nil {
		stopVariants()
		return nil, nil, err
	}
	stop := func() { stopVariants(); ref.stop() }
	purge := func() { h.pub.purge(scratchQueue) }
	// The same bodies as the app's load: "ref" is as long as "put".
	refSys := h.edgeSystem(colReference, ref, h.putTo(ref.url, "bench:ref:", ""), "rabbitmq")
	refSys.after = purge
	refSys.profile, refSys.admin = h.stubProfile("put")
	var n atomic.Int64
	raw := system{name: colRawPublish, after: purge,
		procs: func(ctx context.Context) ([]Proc, error) { return h.stackProcs(ctx, "rabbitmq") },
		load: func(ctx context.Context, dur time.Duration, rate float64) Result {
			cnt, el, err := h.pub.publishAt(ctx, scratchQueue, 256, dur, 0, rate, func(int) amqp.Publishing {
				return h.opMessage(fmt.Sprintf("bench:raw:%d", n.Add(1)), h.value, true)
			})
			r := Result{OK: int64(cnt), Elapsed: el}
			if err != nil {
				Log("raw publish: %v", err)
				r.Errors = 1
			}
			return r
		}}
	systems := append([]system{h.stackSystem(h.putOp("bench:put:"), "api-put-cpu")}, variants...)
	return append(systems, refSys, raw), stop, nil
}

// startPutRef starts the PUT reference behind its own nginx: two stubs
// answering 202 after one confirmed publish to the scratch queue, which
// must be declared. Its response is as large as the app's 202 and its
// message as the app's.
func (h *harness) startPutRef(ctx context.Context, sec *Section) (*edge, error) {
	o := h.o
	size, err := h.putResponseSize(ctx)
	if err != nil {
		return nil, err
	}
	// An add_key message of the load's PUTs (keys of a few digits).
	msgSize := len(h.opMessage("bench:put:100000", h.value, true).Body)
	sec.Setup += fmt.Sprintf(" Response body: %d bytes; message body: %d bytes.", size, msgSize)
	rc := h.api.RabbitMQ
	// The broker URL reaches the stubs in their environment (RABBITMQ_URL),
	// never on their command line.
	e, err := h.startStub(ctx, "put-reference", o.port(3), [2]string{o.port(4), o.port(5)}, h.stubAdmin(), stubProbe,
		"-size", fmt.Sprint(size), "-amqp-queue", scratchQueue, "-amqp-channels", fmt.Sprint(rc.PublishChannels),
		"-amqp-timeout", rc.PublishTimeout.String(), "-amqp-size", fmt.Sprint(msgSize))
	if err != nil {
		return nil, err
	}
	// The readiness GETs published too.
	h.pub.purge(scratchQueue)
	return e, nil
}

// putResponseSize is the size of the app's 202 to one PUT of the load's
// kind (its message joins the others in the stopped consumer's backlog).
func (h *harness) putResponseSize(ctx context.Context) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	body := `{"key":"bench:put:0","value":"` + h.value + `"}`
	req, _ := http.NewRequestWithContext(ctx, http.MethodPut, h.o.Nginx+"/api", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := h.edge.Do(req)
	if err != nil {
		return 0, fmt.Errorf("PUT probe: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, fmt.Errorf("PUT probe: %w", err)
	}
	if resp.StatusCode != http.StatusAccepted {
		return 0, fmt.Errorf("PUT probe: status %d: %s", resp.StatusCode, b)
	}
	return len(b), nil
}

// putTargets are issue 15's and issue 22's targets on the PUT, kvstack as
// shipped, every column at a's rate, and the throughput ratios of the
// closed loops kept beside them without targets.
func putTargets(t *CPUTable, a *atRate) []Target {
	kv := t.Median(rowReplicas, colKVStack)
	shipped := t.Median(rowReplicas, colHarness) // like against like: hitTargets
	off := t.Median(rowReplicas, colUntraced)
	var out []Target
	add := func(ts []Target, cols ...string) { out = append(out, a.judged(ts, cols...)...) }
	add([]Target{AtMostRuns("PUT accepted: API replicas' CPU per request ÷ the reference handler's (one confirmed publish, same queue type), as shipped",
		t.Runs(rowReplicas, colKVStack), t.Runs(rowReplicas, colReference), 1.5, fmtTimes)}, colKVStack, colReference)
	add([]Target{Reported("PUT accepted: the stack's replicas' CPU per request ÷ the same build and environment run by the harness", Ratio(kv, shipped), fmtTimes)}, colKVStack, colHarness)
	add([]Target{AtMost("PUT accepted: tracing's share of the replicas' CPU, as shipped (run by the harness, as the variants)", percent(TracingShare(shipped, off)), 3, fmtPercent)}, colHarness, colUntraced)
	add([]Target{AtMost("PUT accepted: tracing's share of the replicas' CPU, 100 % sampling",
		percent(TracingShare(t.Median(rowReplicas, colFull), off)), 15, fmtPercent)}, colFull, colUntraced)
	add([]Target{Reported("PUT accepted: CPU per request of every process ÷ the reference's", Ratio(t.Median(rowTotal, colKVStack), t.Median(rowTotal, colReference)), fmtTimes)}, colKVStack, colReference)
	out = append(out,
		a.closedRatio("PUT accepted throughput ÷ raw publish", colKVStack, colRawPublish),
		a.closedRatio("PUT accepted throughput ÷ reference (handler + one confirmed publish)", colKVStack, colReference))
	add(authCost("PUT accepted", "", t), colHarness, colAuthOff)
	add(EdgeTLSCost("PUT accepted", t), colHarness, colTLSOff)
	return out
}
