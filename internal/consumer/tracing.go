package consumer

import (
	"context"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// How a batch is traced, so that every message's trace holds the work done
// for it although one transaction and one pipeline serve the whole batch.
//
// Each message's span is the CONSUMER span in its context (the rabbitmq
// runner's "process <queue>", which ends it once the message is settled);
// the processor adds the message's fate to it (kvstack.fate: applied,
// duplicate, stale, dead_lettered) rather than a span of its own, which
// would be one more span per message to record, export and store for no
// more information.
//
//   - A batch of one message runs its PostgreSQL and Redis calls under that
//     span: the instrumented client spans (otelpgx, redisotel) are its
//     children, and the message's trace is complete as it is.
//   - A larger batch runs its calls under one "apply batch" span, a root
//     linked to every message's span (and they to it), so the real client
//     spans appear once, in the batch's trace. Under each message's span, a
//     CLIENT span per call ("INSERT kv_store", "EVALSHA") records that this
//     message was written by that shared call: same start, same end, same
//     outcome, db.operation.batch.size, and a link to the batch span where
//     the call's own spans are.
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

// shared records, under the span of each message in msgs, the call
// the batch made for them from start until now.
func (t *batchTrace) shared(msgs []int, c call, start time.Time, err error) {
	if t.batch == nil {
		return // a batch of one: the client spans are the message's own
	}
	end := time.Now()
	attrs := append([]attribute.KeyValue{c.system, semconv.DBOperationBatchSize(len(msgs))}, c.attrs...)
	link := trace.Link{SpanContext: t.batch.SpanContext()}
	for _, i := range msgs {
		ctx := trace.ContextWithSpan(context.Background(), t.msgs[i])
		_, span := otel.Tracer(tracerName).Start(ctx, c.name, trace.WithSpanKind(trace.SpanKindClient),
			trace.WithTimestamp(start), trace.WithAttributes(attrs...), trace.WithLinks(link))
		setError(span, err)
		span.End(trace.WithTimestamp(end))
	}
}

// end records each message's fate on its span, or the error that left the
// batch to be retried (an event only: the runner, which settles and ends
// the message spans, sets their status), and ends the batch span.
func (t *batchTrace) end(fates []fate, err error) {
	for i, s := range t.msgs {
		if err != nil {
			s.RecordError(err)
			continue
		}
		s.SetAttributes(attribute.String("kvstack.fate", string(fates[i])))
	}
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
