package rabbitmq

import (
	"context"
	"net"
	"net/url"
	"strconv"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// The spans follow the OpenTelemetry messaging conventions for RabbitMQ
// (semconv v1.43.0). Publishing to the default exchange with the queue as
// routing key makes the destination the routing key alone, so the publish
// span is named "publish add_key" (and the consumer package's CONSUMER span
// "process add_key").
//
// Spans are made where docs/ARCHITECTURE.md says ("Where spans and metrics
// are made"); here, the publish span, where a call leaves the process (the
// driver has no instrumentation).
const tracerName = "github.com/kvstack/kvstack/internal/rabbitmq"

func tracer() trace.Tracer { return otel.Tracer(tracerName) }

// hostPort is the host:port of an AMQP URL ("" when it does not parse).
func hostPort(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return ""
	}
	if u.Port() == "" {
		return net.JoinHostPort(u.Hostname(), "5672")
	}
	return u.Host
}

// serverAttrs names the broker (server.address, server.port) from its URL.
func serverAttrs(rawURL string) []attribute.KeyValue {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil
	}
	host, port, err := net.SplitHostPort(u.Host)
	if err != nil {
		host, port = u.Host, "5672"
	}
	attrs := []attribute.KeyValue{semconv.ServerAddress(host)}
	if p, err := strconv.Atoi(port); err == nil {
		attrs = append(attrs, semconv.ServerPort(p))
	}
	return attrs
}

// startPublish starts the PRODUCER span of one publish and writes its
// context into the message headers, so that the consumer's span becomes its
// child.
//
// The attributes are built only for a span that records them: at a low
// sampling ratio most publishes are not sampled, and they still carry
// their (unsampled) trace context to the consumer.
func (p *Publisher) startPublish(ctx context.Context, queue string, msg *amqp.Publishing) (context.Context, trace.Span) {
	ctx, span := p.tracer.Start(ctx, "publish "+queue, trace.WithSpanKind(trace.SpanKindProducer))
	if span.IsRecording() {
		var buf [10]attribute.KeyValue
		attrs := append(buf[:0],
			semconv.MessagingSystemRabbitMQ,
			semconv.MessagingOperationTypeSend,
			semconv.MessagingOperationName("publish"),
			semconv.MessagingDestinationName(queue),
			semconv.MessagingRabbitMQDestinationRoutingKey(queue),
			semconv.MessagingMessageID(msg.MessageId),
			semconv.MessagingMessageBodySize(len(msg.Body)),
		)
		if s := p.sess.Load(); s != nil {
			attrs = append(attrs, s.server...)
		}
		span.SetAttributes(attrs...)
	}
	if msg.Headers == nil {
		msg.Headers = amqp.Table{}
	}
	otel.GetTextMapPropagator().Inject(ctx, HeaderCarrier(msg.Headers))
	return ctx, span
}

// endSpan records the outcome of an operation on its span and ends it.
func endSpan(span trace.Span, err error) {
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
		span.SetAttributes(semconv.ErrorTypeOther)
	}
	span.End()
}
