package rabbitmq

import (
	"context"
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// BenchmarkStartPublish: a PUT's PRODUCER span started and ended at the
// shipped sampler (parent-based, 10 %), its trace context injected, with
// the Publisher's tracer ("cached") and with otel.Tracer looked up per
// publish as before ("lookup").
func BenchmarkStartPublish(b *testing.B) {
	prevTP, prevProp := otel.GetTracerProvider(), otel.GetTextMapPropagator()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(0.1))))
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	b.Cleanup(func() {
		_ = tp.Shutdown(context.Background())
		otel.SetTracerProvider(prevTP)
		otel.SetTextMapPropagator(prevProp)
	})
	for _, c := range []struct {
		name   string
		lookup bool
	}{{"cached", false}, {"lookup", true}} {
		b.Run(c.name, func(b *testing.B) {
			p := &Publisher{tracer: tracer()}
			b.ReportAllocs()
			for b.Loop() {
				if c.lookup {
					p.tracer = tracer()
				}
				msg := amqp.Publishing{Headers: amqp.Table{}, MessageId: "id", Body: []byte("{}")}
				_, span := p.startPublish(context.Background(), "add_key", &msg)
				span.End()
			}
		})
	}
}
