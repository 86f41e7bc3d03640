package rabbitmq

import (
	"context"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.opentelemetry.io/otel/propagation"
)

// HeaderInjector writes the context's cross-process data (the W3C trace
// context, baggage) into the headers of a message about to be published.
type HeaderInjector func(ctx context.Context, headers amqp.Table)

// HeaderExtractor returns ctx enriched with what a delivery's headers carry.
type HeaderExtractor func(ctx context.Context, headers amqp.Table) context.Context

// HeaderCarrier adapts AMQP headers to OpenTelemetry propagators.
// Get and Keys work on a nil table; Set needs a non-nil one.
type HeaderCarrier amqp.Table

var _ propagation.TextMapCarrier = HeaderCarrier(nil)

// Get returns the value of key as a string: strings as they are, byte
// slices (how some clients send AMQP long strings) converted, anything
// else as "".
func (c HeaderCarrier) Get(key string) string {
	switch v := c[key].(type) {
	case string:
		return v
	case []byte:
		return string(v)
	}
	return ""
}

// Set stores value under key.
func (c HeaderCarrier) Set(key, value string) { c[key] = value }

// Keys lists the header names.
func (c HeaderCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}

// PropagatorInjector is a HeaderInjector that uses p (for example
// otel.GetTextMapPropagator()).
func PropagatorInjector(p propagation.TextMapPropagator) HeaderInjector {
	return func(ctx context.Context, headers amqp.Table) { p.Inject(ctx, HeaderCarrier(headers)) }
}

// PropagatorExtractor is a HeaderExtractor that uses p.
func PropagatorExtractor(p propagation.TextMapPropagator) HeaderExtractor {
	return func(ctx context.Context, headers amqp.Table) context.Context {
		return p.Extract(ctx, HeaderCarrier(headers))
	}
}
