package httpapi

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// Every answer of the API, errors and streams included, carries the
// traceparent of the server span that served it (started outside the
// router, as app.traceHTTP does), so a client can find that very span.
func TestEveryAPIAnswerCarriesItsTraceparent(t *testing.T) {
	prev := otel.GetTextMapPropagator()
	otel.SetTextMapPropagator(propagation.TraceContext{})
	t.Cleanup(func() { otel.SetTextMapPropagator(prev) })
	tracer := sdktrace.NewTracerProvider().Tracer("test")

	svc := &fakeService{entries: map[string]string{"a": "1", "b": "2", "c": "3"}}
	h := newTestHandler(svc)
	panicky := newTestHandler(&panicService{})
	for _, tc := range []struct {
		name, method, target, body string
		handler                    http.Handler
		want                       int
	}{
		{"read", "GET", "/api?key=a", "", h, 200},
		{"head", "HEAD", "/api?key=a", "", h, 200},
		{"absent", "GET", "/api?key=zz", "", h, 404},
		{"bad key", "GET", "/api?key=", "", h, 400},
		{"put", "PUT", "/api", `{"key":"a","value":"b"}`, h, 202},
		{"put too large", "PUT", "/api", `{"key":"a","value":"` + strings.Repeat("v", 300) + `"}`, h, 413},
		{"delete", "DELETE", "/api?key=a", "", h, 202},
		{"stream", "GET", "/api/all", "", h, 200},
		{"made-up method", "BREW", "/api", "", h, 405},
		{"unknown route", "GET", "/nope", "", h, 404},
		{"panic", "GET", "/api?key=a", "", panicky, 500},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, span := tracer.Start(context.Background(), "server", trace.WithSpanKind(trace.SpanKindServer))
			defer span.End()
			req := httptest.NewRequest(tc.method, tc.target, strings.NewReader(tc.body)).WithContext(ctx)
			rec := httptest.NewRecorder()
			tc.handler.ServeHTTP(rec, req)
			if rec.Code != tc.want {
				t.Fatalf("status %d, want %d", rec.Code, tc.want)
			}
			sc := span.SpanContext()
			want := "00-" + sc.TraceID().String() + "-" + sc.SpanID().String() + "-01"
			if got := rec.Header().Get("traceparent"); got != want {
				t.Errorf("traceparent %q, want the server span's %q", got, want)
			}
		})
	}
}
