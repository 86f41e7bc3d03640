package consumer

import (
	"context"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/kvstack/kvstack/internal/kv"
	"github.com/kvstack/kvstack/internal/msgsig"
)

// How a message is traced. Its CONSUMER span, "process <queue>", starts
// when it is delivered (a child of the producer's span, carried in the
// headers, and linked to it) and ends when it is settled: the span's end is
// the ack, and kvstack.outcome says what became of it (applied, duplicate,
// stale, dead_lettered).
//
// A batch is applied by one transaction and one pipeline, and a span has one
// parent, so:
//   - A batch of one message runs its PostgreSQL and Redis calls under that
//     message's span: the instrumented client spans (otelpgx, redisotel) are
//     its children, and the message's trace is complete as it is.
//   - A larger batch runs its calls under one "apply batch" span, a root
//     linked to every message's span (and they to it), so the real client
//     spans appear once, in the batch's trace. On each message's span, an
//     event per call ("INSERT kv_store", "EVALSHA") records that this
//     message was written by that shared call: at the call's end, with its
//     duration, db.operation.batch.size and, if it failed, error.type; the
//     link leads to the batch span where the call's own spans are.
//
// Events, not a CLIENT span per message and call as before: the same
// facts in the message's trace for a third of the spans, which were 14 %
// of the consumer's CPU and 43 % of Jaeger's while draining
// (lab/bench/NOTES.md).
//
// Spans are made where docs/ARCHITECTURE.md says ("Where spans and metrics
// are made"); here, a message's process span and a batch's apply span, where
// work enters the consumer.
const tracerName = "github.com/kvstack/kvstack/internal/consumer"

type batchTrace struct {
	ctx   context.Context // the store and cache calls run under it
	batch trace.Span      // nil for a batch of one
	msgs  []trace.Span    // each message's span, from its context
}

func startBatchTrace(ctx context.Context, msgs []Message) *batchTrace {
	t := &batchTrace{msgs: make([]trace.Span, len(msgs))}
	links := make([]trace.Link, len(msgs))
	for i, m := range msgs {
		t.msgs[i] = trace.SpanFromContext(m.Ctx)
		links[i] = trace.Link{SpanContext: t.msgs[i].SpanContext()}
	}
	if len(msgs) == 1 {
		t.ctx = trace.ContextWithSpan(ctx, t.msgs[0])
		return t
	}
	t.ctx, t.batch = otel.Tracer(tracerName).Start(ctx, "apply batch", trace.WithNewRoot(), trace.WithLinks(links...),
		trace.WithAttributes(semconv.MessagingBatchMessageCount(len(msgs))))
	for _, s := range t.msgs {
		s.AddLink(trace.Link{SpanContext: t.batch.SpanContext()})
	}
	return t
}

// call describes a client call that a batch shares.
type call struct {
	name   string
	system attribute.KeyValue
	attrs  []attribute.KeyValue
}

var (
	postgresCall = call{"INSERT kv_store", semconv.DBSystemNamePostgreSQL,
		[]attribute.KeyValue{semconv.DBOperationName("INSERT"), semconv.DBCollectionName("kv_store")}}
	redisCall = call{"EVALSHA", semconv.DBSystemNameRedis,
		[]attribute.KeyValue{semconv.DBOperationName("EVALSHA")}}
)

// durationKey is a shared call's duration on its event, in milliseconds.
const durationKey = attribute.Key("kvstack.duration_ms")

// shared records, on the span of each message in msgs, the call the batch
// made for them from start until now.
func (t *batchTrace) shared(msgs []int, c call, start time.Time, err error) {
	if t.batch == nil {
		return // a batch of one: the client spans are the message's own
	}
	end := time.Now()
	attrs := append([]attribute.KeyValue{c.system, semconv.DBOperationBatchSize(len(msgs)),
		durationKey.Float64(float64(end.Sub(start).Microseconds()) / 1000)}, c.attrs...)
	if err != nil {
		attrs = append(attrs, semconv.ErrorTypeOther)
	}
	for _, i := range msgs {
		t.msgs[i].AddEvent(c.name, trace.WithTimestamp(end), trace.WithAttributes(attrs...))
	}
}

// end ends the batch span, recording err (the batch is then retried).
func (t *batchTrace) end(err error) {
	if t.batch != nil {
		setError(t.batch, err)
		t.batch.End()
	}
}

func setError(s trace.Span, err error) {
	if err != nil {
		s.RecordError(err)
		s.SetStatus(codes.Error, err.Error())
	}
}

// batch is the deliveries in hand, each with its message and span.
type batch struct {
	deliveries []Delivery
	msgs       []Message
	spans      []trace.Span
}

// add takes a delivery into the batch and starts its span.
func (b *batch) add(d Delivery) {
	parent := otel.GetTextMapPropagator().Extract(context.Background(), d.Header)
	attrs := append([]attribute.KeyValue{
		semconv.MessagingOperationTypeProcess,
		semconv.MessagingOperationName("process"),
		semconv.MessagingDestinationName(d.Queue),
	}, d.Attrs...)
	var writer string
	if d.Header != nil {
		writer = d.Header.Get(kv.WriterHeader)
	}
	if writer != "" {
		attrs = append(attrs, attribute.String("enduser.id", writer))
	}
	opts := []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes(attrs...)}
	if sc := trace.SpanContextFromContext(parent); sc.IsValid() {
		// The conventions ask for the link too, since a consumer may
		// process messages in batches.
		opts = append(opts, trace.WithLinks(trace.Link{SpanContext: sc}))
	}
	ctx, span := otel.Tracer(tracerName).Start(parent, "process "+d.Queue, opts...)
	b.deliveries = append(b.deliveries, d)
	m := Message{Queue: d.Queue, Kind: d.Kind, Body: d.Body, WrittenBy: writer, Ctx: ctx}
	if d.Header != nil {
		m.KeyID, m.Signature = d.Header.Get(msgsig.KeyIDHeader), d.Header.Get(msgsig.SignatureHeader)
	}
	b.msgs = append(b.msgs, m)
	b.spans = append(b.spans, span)
}

// outcomeKey is the attribute that says what became of a message.
const outcomeKey = attribute.Key("kvstack.outcome")

// reasonKey says why a message was dead-lettered.
const reasonKey = attribute.Key("kvstack.dead_letter.reason")

// end ends every message's span once the batch is settled, recording its
// outcome; or, when err is not nil, once the batch is abandoned unsettled
// (the broker delivers it again).
func (b *batch) end(results []Result, err error) {
	for i, span := range b.spans {
		switch {
		case err != nil:
			span.AddEvent("not settled; the broker will deliver it again")
			setError(span, err)
		case results[i].Outcome == kv.DeadLettered:
			span.SetAttributes(outcomeKey.String(results[i].Outcome.String()), reasonKey.String(results[i].Reason))
			span.SetStatus(codes.Error, "dead-lettered")
		default:
			span.SetAttributes(outcomeKey.String(results[i].Outcome.String()))
		}
		span.End()
	}
}
