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

// ended returns the recorded (ended) copy of span.
func ended(t *testing.T, rec *tracetest.SpanRecorder, span trace.Span) sdktrace.ReadOnlySpan {
	t.Helper()
	for _, s := range rec.Ended() {
		if s.SpanContext().SpanID() == span.SpanContext().SpanID() {
			return s
		}
	}
	t.Fatalf("span %s not ended", span.SpanContext().SpanID())
	return nil
}

func TestBatchOfOneTracesUnderTheMessage(t *testing.T) {
	rec := recordSpans(t)
	p, _, _ := newTestProcessor()
	m, consumerSpan := tracedMsg(t, op(kv.KindPut, "a", "v", 1))
	if _, err := p.Handle(context.Background(), []Message{m}); err != nil {
		t.Fatal(err)
	}
	consumerSpan.End()
	if n := len(rec.Ended()); n != 1 {
		t.Fatalf("%d spans ended, want the consumer span alone (no span of the processor's own)", n)
	}
}

func TestLargerBatchSharesItsCallsWithEveryMessage(t *testing.T) {
	rec := recordSpans(t)
	p, _, _ := newTestProcessor()
	m1, s1 := tracedMsg(t, op(kv.KindPut, "a", "v", 1))
	m2, s2 := tracedMsg(t, op(kv.KindDelete, "b", "", 1))
	bad, s3 := tracedMsg(t, op(kv.KindPut, "c", "v", 1))
	bad.Body = []byte("{")
	if _, err := p.Handle(context.Background(), []Message{m1, m2, bad}); err != nil {
		t.Fatal(err)
	}
	for _, s := range []trace.Span{s1, s2, s3} {
		s.End()
	}

	batch := spansNamed(rec, "apply batch")
	if len(batch) != 1 || batch[0].Parent().IsValid() || len(batch[0].Links()) != 3 {
		t.Fatalf("want one root batch span linked to the 3 messages, got %v", batch)
	}
	for _, call := range []string{"INSERT kv_store", "EVALSHA"} {
		shared := spansNamed(rec, call)
		if len(shared) != 2 {
			t.Fatalf("%d %q spans, want one per applied message (2)", len(shared), call)
		}
		parents := map[trace.SpanID]bool{}
		for _, s := range shared {
			parents[s.Parent().SpanID()] = true
			if s.SpanKind() != trace.SpanKindClient || len(s.Links()) != 1 || s.Links()[0].SpanContext.SpanID() != batch[0].SpanContext().SpanID() {
				t.Errorf("%s span: kind %v, links %v; want a client span linked to the batch", call, s.SpanKind(), s.Links())
			}
		}
		if !parents[s1.SpanContext().SpanID()] || !parents[s2.SpanContext().SpanID()] {
			t.Errorf("%s spans are not children of each applied message's span", call)
		}
	}
	for _, span := range []trace.Span{s1, s2, s3} {
		got := ended(t, rec, span)
		if links := got.Links(); len(links) != 1 || links[0].SpanContext.SpanID() != batch[0].SpanContext().SpanID() {
			t.Errorf("message span links %v, want the batch span", links)
		}
	}
}
