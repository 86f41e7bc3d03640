package rabbitmq_test

import (
	"context"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/kvstack/kvstack/internal/consumer"
	"github.com/kvstack/kvstack/internal/kv"
	"github.com/kvstack/kvstack/internal/rabbitmq"
	"github.com/kvstack/kvstack/internal/rabbitmq/rabbittest"
)

// recordSpans installs a recording tracer provider and the W3C propagator
// for the test, as a process's telemetry set-up would.
func recordSpans(t *testing.T) *tracetest.SpanRecorder {
	t.Helper()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	prevTP, prevProp := otel.GetTracerProvider(), otel.GetTextMapPropagator()
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagation.TraceContext{})
	t.Cleanup(func() {
		otel.SetTracerProvider(prevTP)
		otel.SetTextMapPropagator(prevProp)
		_ = tp.Shutdown(context.Background())
	})
	return rec
}

func attrs(s sdktrace.ReadOnlySpan) map[attribute.Key]attribute.Value {
	m := map[attribute.Key]attribute.Value{}
	for _, kv := range s.Attributes() {
		m[kv.Key] = kv.Value
	}
	return m
}

func findSpan(t *testing.T, rec *tracetest.SpanRecorder, name string) sdktrace.ReadOnlySpan {
	t.Helper()
	for _, s := range rec.Ended() {
		if s.Name() == name {
			return s
		}
	}
	var names []string
	for _, s := range rec.Ended() {
		names = append(names, s.Name())
	}
	t.Fatalf("no ended span %q among %v", name, names)
	return nil
}

// TestTraceCrossesTheQueue: the publish is a PRODUCER span under the
// caller's span, its context travels in the headers, and the consumer's
// CONSUMER span is its child (and links to it), so that the handler's work
// joins the same trace.
func TestTraceCrossesTheQueue(t *testing.T) {
	rec := recordSpans(t)
	cfg := rabbittest.MustConfig(t)
	p := mustPublisher(t, cfg)

	ctx, parent := otel.Tracer("test").Start(context.Background(), "PUT /api")
	op := kv.Op{Kind: kv.KindPut, Key: "k", Value: "v", Version: kv.NewVersion(time.Now())}
	if err := p.Publish(ctx, op); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	parent.End()

	handled := make(chan trace.SpanContext, 1)
	startRunner(t, cfg, handlerFunc(func(_ context.Context, b []consumer.Message) ([]consumer.Result, error) {
		for range b {
			handled <- trace.SpanContextFromContext(b[0].Ctx)
		}
		return make([]consumer.Result, len(b)), nil
	}))
	var msgSpan trace.SpanContext
	select {
	case msgSpan = <-handled:
	case <-time.After(20 * time.Second):
		t.Fatal("message never handled")
	}

	pub := findSpan(t, rec, "publish "+cfg.QueueAdd)
	waitFor(t, 10*time.Second, "the process span to end", func() bool {
		for _, s := range rec.Ended() {
			if s.Name() == "process "+cfg.QueueAdd {
				return true
			}
		}
		return false
	})
	proc := findSpan(t, rec, "process "+cfg.QueueAdd)

	if pub.SpanKind() != trace.SpanKindProducer || proc.SpanKind() != trace.SpanKindConsumer {
		t.Errorf("kinds = %v, %v; want producer, consumer", pub.SpanKind(), proc.SpanKind())
	}
	if pub.Parent().SpanID() != parent.SpanContext().SpanID() {
		t.Errorf("publish span's parent = %v, want the caller's span", pub.Parent().SpanID())
	}
	if proc.Parent().SpanID() != pub.SpanContext().SpanID() || proc.SpanContext().TraceID() != parent.SpanContext().TraceID() {
		t.Errorf("process span is not the publish span's child in the same trace")
	}
	if links := proc.Links(); len(links) != 1 || links[0].SpanContext.SpanID() != pub.SpanContext().SpanID() {
		t.Errorf("process span links = %v, want one to the publish span", links)
	}
	if msgSpan.SpanID() != proc.SpanContext().SpanID() {
		t.Errorf("the handler's message context is not the process span")
	}
	for span, want := range map[sdktrace.ReadOnlySpan]map[attribute.Key]string{
		pub:  {"messaging.system": "rabbitmq", "messaging.operation.type": "send", "messaging.operation.name": "publish", "messaging.destination.name": cfg.QueueAdd, "messaging.message.id": op.Version.OpID.String(), "server.address": "127.0.0.1"},
		proc: {"messaging.system": "rabbitmq", "messaging.operation.type": "process", "messaging.operation.name": "process", "messaging.destination.name": cfg.QueueAdd, "messaging.rabbitmq.destination.routing_key": cfg.QueueAdd, "messaging.message.id": op.Version.OpID.String()},
	} {
		got := attrs(span)
		for k, v := range want {
			if got[k].String() != v {
				t.Errorf("%s: %s = %q, want %q", span.Name(), k, got[k].String(), v)
			}
		}
	}
}

func TestPublishFailureIsRecordedOnTheSpan(t *testing.T) {
	rec := recordSpans(t)
	cfg := rabbittest.MustConfig(t)
	cfg.URL = "amqp://guest:guest@127.0.0.1:1/"
	p, err := rabbitmq.NewPublisher(cfg, rabbittest.Keys(t), testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if err := p.Publish(context.Background(), kv.Op{Kind: kv.KindDelete, Key: "k", Version: kv.NewVersion(time.Now())}); err == nil {
		t.Fatal("publish to a dead broker succeeded")
	}
	span := findSpan(t, rec, "publish "+cfg.QueueDel)
	if span.Status().Code.String() != "Error" || len(span.Events()) == 0 {
		t.Fatalf("span status %v with %d events, want Error with the recorded error", span.Status(), len(span.Events()))
	}
}
