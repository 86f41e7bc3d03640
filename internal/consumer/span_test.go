package consumer

import (
	"context"
	"slices"
	"testing"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
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
	if n := len(rec.Ended()); n != 4 {
		t.Errorf("%d spans ended, want the batch's and the 3 messages' (the shared calls are events)", n)
	}
	for _, span := range []trace.Span{s1, s2} {
		got := ended(t, rec, span)
		var calls []string
		for _, e := range got.Events() {
			calls = append(calls, e.Name)
			a := map[attribute.Key]attribute.Value{}
			for _, kv := range e.Attributes {
				a[kv.Key] = kv.Value
			}
			if a["db.operation.batch.size"].AsInt64() != 2 || a["kvstack.duration_ms"].Type() != attribute.FLOAT64 || a["db.system.name"].AsString() == "" {
				t.Errorf("event %q attributes %v, want the call's system, duration and the 2 messages it wrote", e.Name, e.Attributes)
			}
		}
		if !slices.Equal(calls, []string{"INSERT kv_store", "EVALSHA"}) {
			t.Errorf("message span events %v, want one per shared call", calls)
		}
	}
	if events := ended(t, rec, s3).Events(); len(events) != 0 {
		t.Errorf("the undecodable message has events %v; it was written by no call", events)
	}
	for _, span := range []trace.Span{s1, s2, s3} {
		got := ended(t, rec, span)
		if links := got.Links(); len(links) != 1 || links[0].SpanContext.SpanID() != batch[0].SpanContext().SpanID() {
			t.Errorf("message span links %v, want the batch span", links)
		}
	}
}

// A message's process span names its writer (the kv-written-by header,
// the token's subject at the API) as enduser.id, as the API's server span
// does (docs/DESIGN.md, Attribution); a message that names none has no
// enduser.id.
func TestProcessSpanNamesTheWriter(t *testing.T) {
	rec := recordSpans(t)
	for _, tc := range []struct{ name, writer string }{
		{"named", "alice"},
		{"unnamed", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			header := propagation.MapCarrier{}
			if tc.writer != "" {
				header.Set(kv.WriterHeader, tc.writer)
			}
			var b batch
			b.add(Delivery{Queue: "add_key", Kind: kv.KindPut, Body: []byte("{}"), Header: header})
			if got := b.msgs[0].WrittenBy; got != tc.writer {
				t.Errorf("message WrittenBy = %q, want %q", got, tc.writer)
			}
			b.spans[0].End()
			got, ok := "", false
			for _, a := range ended(t, rec, b.spans[0]).Attributes() {
				if a.Key == "enduser.id" {
					got, ok = a.Value.AsString(), true
				}
			}
			if want := tc.writer != ""; ok != want || got != tc.writer {
				t.Errorf("process span enduser.id = %q (present %v), want %q", got, ok, tc.writer)
			}
		})
	}
}
