package telemetry

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"strings"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
)

// Shutdown flushes and stops what Setup started.
type Shutdown func(context.Context) error

// SetupTracing installs the global tracer provider and propagators for a
// process named service (kv-api, kv-consumer) and returns the function that
// flushes them on exit.
//
// The standard OTEL_* variables work: OTEL_EXPORTER_OTLP_ENDPOINT and
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT (default http://localhost:4318),
// OTEL_EXPORTER_OTLP_PROTOCOL ("http/protobuf" by default, or "grpc"),
// OTEL_TRACES_EXPORTER ("otlp", or "none" to export nothing),
// OTEL_TRACES_SAMPLER and _ARG (SamplerFromEnv: parent-based always-on by
// default, parentbased_traceidratio in production), OTEL_BSP_*,
// OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES (they override the
// defaults given here). Propagation is W3C TraceContext and Baggage.
func SetupTracing(ctx context.Context, service, instanceID, version string) (Shutdown, error) {
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))

	res, err := resource.New(ctx,
		resource.WithAttributes(
			semconv.ServiceName(service),
			semconv.ServiceInstanceID(instanceID),
			semconv.ServiceVersion(version),
		),
		resource.WithFromEnv(), // OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES win
		resource.WithTelemetrySDK(),
		resource.WithHost(),
		resource.WithProcessPID(),
		resource.WithProcessRuntimeVersion(),
	)
	if err != nil && !errors.Is(err, resource.ErrPartialResource) {
		return nil, fmt.Errorf("tracing resource: %w", err)
	}

	sampler, err := SamplerFromEnv()
	if err != nil {
		return nil, err
	}
	opts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res), sdktrace.WithSampler(sampler)}
	exporter, err := newExporter(ctx)
	if err != nil {
		return nil, err
	}
	if exporter != nil {
		opts = append(opts, sdktrace.WithBatcher(exporter))
	}
	tp := sdktrace.NewTracerProvider(opts...)
	otel.SetTracerProvider(tp)
	return tp.Shutdown, nil
}

// newExporter picks the OTLP exporter the environment asks for; nil when
// OTEL_TRACES_EXPORTER is "none".
func newExporter(ctx context.Context) (sdktrace.SpanExporter, error) {
	switch exp := strings.TrimSpace(os.Getenv("OTEL_TRACES_EXPORTER")); exp {
	case "none":
		return nil, nil
	case "", "otlp":
	default:
		return nil, fmt.Errorf("OTEL_TRACES_EXPORTER=%q: only otlp and none are supported", exp)
	}
	protocol := os.Getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
	if protocol == "" {
		protocol = os.Getenv("OTEL_EXPORTER_OTLP_PROTOCOL")
	}
	var (
		exp sdktrace.SpanExporter
		err error
	)
	switch protocol {
	case "", "http/protobuf":
		// Ours, unless the environment asks for what only otlptracehttp
		// does (certificates, compression).
		fast, ok, ferr := otlpFromEnv()
		if ferr != nil {
			return nil, fmt.Errorf("trace exporter: %w", ferr)
		}
		if ok {
			return fast, nil
		}
		exp, err = otlptracehttp.New(ctx)
	case "grpc":
		exp, err = otlptracegrpc.New(ctx)
	default:
		return nil, fmt.Errorf("OTEL_EXPORTER_OTLP_PROTOCOL=%q: want http/protobuf or grpc", protocol)
	}
	if err != nil {
		return nil, fmt.Errorf("trace exporter: %w", err)
	}
	return exp, nil
}

// Version is the main module's version as the build recorded it ("devel"
// for a local build).
func Version() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "devel"
}
