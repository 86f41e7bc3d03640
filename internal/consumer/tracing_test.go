package consumer

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/kvstack/kvstack/internal/kv"
)

func recordSpans(t *testing.T) *tracetest.SpanRecorder {
	t.Helper()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	prev := otel.GetTracerProvider()
	otel.SetTracerProvider(tp)
	t.Cleanup(func() { otel.SetTracerProvider(prev) })
	return rec
}

// tracedMsg is a message whose context holds a CONSUMER span of its own.
func tracedMsg(t *testing.T, o kv.Op) (Message, trace.Span) {
	t.Helper()
	m := msg(t, o)
	var span trace.Span
	m.Ctx, span = otel.Tracer("test").Start(context.Background(), "process queue", trace.WithSpanKind(trace.SpanKindConsumer))
	return m, span
}

func spansNamed(rec *tracetest.SpanRecorder, name string) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		if s.Name() == name {
			out = append(out, s)
		}
	}
	return out
}

func TestBatchOfOneTracesUnderTheMessage(t *testing.T) {
	rec := recordSpans(t)
	p, _, _ := newTestProcessor()
	m, consumerSpan := tracedMsg(t, op(kv.KindPut, "a", "v", 1))
	if _, err := p.Handle(context.Background(), []Message{m}); err != nil {
		t.Fatal(err)
	}
	consumerSpan.End()
	applies := spansNamed(rec, "apply put")
	if len(applies) != 1 || applies[0].Parent().SpanID() != consumerSpan.SpanContext().SpanID() {
		t.Fatalf("apply spans %v: want one, child of the consumer span", applies)
	}
	if len(spansNamed(rec, "apply batch")) != 0 || len(spansNamed(rec, "INSERT kv_store")) != 0 {
		t.Fatalf("a batch of one made a batch span or shared-call spans")
	}
}

func TestLargerBatchSharesItsCallsWithEveryMessage(t *testing.T) {
	rec := recordSpans(t)
	p, _, _ := newTestProcessor()
	m1, s1 := tracedMsg(t, op(kv.KindPut, "a", "v", 1))
	m2, s2 := tracedMsg(t, op(kv.KindDelete, "b", "", 1))
	bad := Message{Kind: kv.KindPut, Body: []byte("{"), Ctx: context.Background()}
	if _, err := p.Handle(context.Background(), []Message{m1, m2, bad}); err != nil {
		t.Fatal(err)
	}
	s1.End()
	s2.End()

	batch := spansNamed(rec, "apply batch")
	if len(batch) != 1 || batch[0].Parent().IsValid() || len(batch[0].Links()) != 3 {
		t.Fatalf("want one root batch span linked to the 3 messages, got %v", batch)
	}
	for _, call := range []string{"INSERT kv_store", "EVALSHA"} {
		shared := spansNamed(rec, call)
		if len(shared) != 2 {
			t.Fatalf("%d %q spans, want one per applied message (2)", len(shared), call)
		}
		traces := map[trace.TraceID]bool{}
		for _, s := range shared {
			traces[s.SpanContext().TraceID()] = true
			if s.SpanKind() != trace.SpanKindClient || len(s.Links()) != 1 || s.Links()[0].SpanContext.SpanID() != batch[0].SpanContext().SpanID() {
				t.Errorf("%s span: kind %v, links %v; want a client span linked to the batch", call, s.SpanKind(), s.Links())
			}
		}
		if !traces[s1.SpanContext().TraceID()] || !traces[s2.SpanContext().TraceID()] {
			t.Errorf("%s spans are not in each message's trace", call)
		}
	}
	fates := map[string]bool{}
	for _, s := range append(spansNamed(rec, "apply put"), spansNamed(rec, "apply delete")...) {
		for _, a := range s.Attributes() {
			if a.Key == "kvstack.fate" {
				fates[a.Value.AsString()] = true
			}
		}
	}
	if !fates["applied"] || !fates["dead_lettered"] {
		t.Errorf("fates recorded = %v, want applied and dead_lettered", fates)
	}
}
