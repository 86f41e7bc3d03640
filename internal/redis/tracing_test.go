package redis_test

import (
	"strings"
	"testing"

	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/kvstack/kvstack/internal/kv"
	"github.com/kvstack/kvstack/internal/redis"
	"github.com/kvstack/kvstack/internal/redis/redistest"
)

// Every command is traced, and no value ends up in a span.
func TestSpansCarryNoValues(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	prev := otel.GetTracerProvider()
	otel.SetTracerProvider(tp) // redisotel takes the global provider when the client is built
	t.Cleanup(func() { otel.SetTracerProvider(prev) })

	ctx := testContext(t)
	client, cfg := redistest.MustClient(t)
	c := redis.NewCache(client, cfg, nil)
	const secret = "value-that-must-not-be-traced"
	if _, err := c.Fill(ctx, value("k", ver(1, 1), secret)); err != nil {
		t.Fatalf("Fill: %v", err)
	}
	if err := c.Apply(ctx, []kv.Entry{value("k", ver(2, 1), secret+"2"), value("j", ver(2, 1), secret)}); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if _, err := c.Get(ctx, "k"); err != nil {
		t.Fatalf("Get: %v", err)
	}

	spans := rec.Ended()
	if len(spans) < 3 {
		t.Fatalf("recorded %d spans, want at least one per call (3)", len(spans))
	}
	for _, s := range spans {
		for _, a := range s.Attributes() {
			if strings.Contains(a.Value.String(), secret) {
				t.Errorf("span %q attribute %s carries the value", s.Name(), a.Key)
			}
		}
		for _, ev := range s.Events() {
			for _, a := range ev.Attributes {
				if strings.Contains(a.Value.String(), secret) {
					t.Errorf("span %q event %q attribute %s carries the value", s.Name(), ev.Name, a.Key)
				}
			}
		}
	}
}
