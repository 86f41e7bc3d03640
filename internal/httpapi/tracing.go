package httpapi

import (
	"net/http"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// traceRoute gives the request's server span (started by the tracing
// middleware outside the router) its route-template name, "PUT /api" rather
// than the raw URL, and returns the trace's traceparent to the client so
// that it can look the trace up.
func traceRoute(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		otel.GetTextMapPropagator().Inject(r.Context(), propagation.HeaderCarrier(w.Header()))
		next.ServeHTTP(w, r)
		span := trace.SpanFromContext(r.Context())
		route := routePattern(r)
		span.SetName(spanMethod(r.Method) + " " + route)
		span.SetAttributes(semconv.HTTPRoute(route))
	})
}

// spanMethod keeps a client's made-up method out of span names, as
// methodLabel keeps it out of metric labels: the semantic conventions name
// such a span "HTTP {route}".
func spanMethod(m string) string {
	if methodLabel(m) == "other" {
		return "HTTP"
	}
	return m
}
