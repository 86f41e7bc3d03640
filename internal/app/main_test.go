package app

import (
	"os"
	"testing"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// spans records every span the processes under test make, as a process's
// telemetry set-up would export them. It is installed once, before any
// client is built, because instrumentation binds the global provider then.
var spans = tracetest.NewSpanRecorder()

func TestMain(m *testing.M) {
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	code := m.Run()
	privatePostgres.Close()
	privateRedis.Close()
	privateBroker.Close()
	privatePair.Close()
	privateRedisCluster.Close()
	os.Exit(code)
}
