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

	"github.com/kvstack/kvstack/internal/consumer"
)

// The spans follow the OpenTelemetry messaging conventions for RabbitMQ
// (semconv v1.43.0). Publishing to the default exchange with the queue as
// routing key makes the destination the routing key alone, so spans are
// named "publish add_key" and "process add_key".
const tracerName = "github.com/kvstack/kvstack/internal/rabbitmq"

func tracer() trace.Tracer { return otel.Tracer(tracerName) }

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
func (p *Publisher) startPublish(ctx context.Context, queue string, msg *amqp.Publishing) (context.Context, trace.Span) {
	attrs := append([]attribute.KeyValue{
		semconv.MessagingSystemRabbitMQ,
		semconv.MessagingOperationTypeSend,
		semconv.MessagingOperationName("publish"),
		semconv.MessagingDestinationName(queue),
		semconv.MessagingRabbitMQDestinationRoutingKey(queue),
		semconv.MessagingMessageID(msg.MessageId),
		semconv.MessagingMessageBodySize(len(msg.Body)),
	}, p.server...)
	ctx, span := tracer().Start(ctx, "publish "+queue, trace.WithSpanKind(trace.SpanKindProducer), trace.WithAttributes(attrs...))
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

// startProcess starts the CONSUMER span of one delivery: a child of the
// producer's span carried in the headers, and linked to it, as the
// conventions ask for a consumer that may process messages in batches.
func (c *Consumer) startProcess(base context.Context, s *source, d amqp.Delivery) (context.Context, trace.Span) {
	parent := otel.GetTextMapPropagator().Extract(base, HeaderCarrier(d.Headers))
	attrs := append([]attribute.KeyValue{
		semconv.MessagingSystemRabbitMQ,
		semconv.MessagingOperationTypeProcess,
		semconv.MessagingOperationName("process"),
		semconv.MessagingDestinationName(s.queue),
		semconv.MessagingRabbitMQDestinationRoutingKey(d.RoutingKey),
		semconv.MessagingRabbitMQMessageDeliveryTag(int(d.DeliveryTag)),
		semconv.MessagingMessageID(d.MessageId),
		semconv.MessagingMessageBodySize(len(d.Body)),
	}, c.server...)
	opts := []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes(attrs...)}
	if sc := trace.SpanContextFromContext(parent); sc.IsValid() {
		opts = append(opts, trace.WithLinks(trace.Link{SpanContext: sc}))
	}
	return tracer().Start(parent, "process "+s.queue, opts...)
}

// endSpans ends the batch's CONSUMER spans once it is settled, or abandoned
// (err: the broker will deliver the messages again).
func (b *batch) endSpans(verdicts []consumer.Verdict, err error) {
	for i, span := range b.spans {
		switch {
		case err != nil:
			span.AddEvent("not acked; the broker will redeliver")
			endSpan(span, err)
		case i < len(verdicts) && verdicts[i] == consumer.DeadLetter:
			span.AddEvent("dead-lettered")
			span.SetStatus(codes.Error, "dead-lettered")
			span.End()
		default: // acked: the span's end is the ack
			span.End()
		}
	}
}
