package httpapi

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/kvstack/kvstack/internal/auth"
	"github.com/kvstack/kvstack/internal/auth/mint"
)

// discardWriter is a ResponseWriter that keeps nothing: the benchmark
// measures the API's code, not a recorder's.
type discardWriter struct{ h http.Header }

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (d *discardWriter) WriteHeader(int)             {}

// What each layer adds to a GET hit in the replica's own code, the I/O
// left out (a service answering from memory): as shipped (auth on, a
// reused token, the production sampler at 10 %, the access log), then
// with one layer changed. The bench's variants measure the same layers
// through nginx, where the I/O dilutes them (lab/bench/NOTES.md).
func BenchmarkGetHitLayers(b *testing.B) {
	tok, err := testIssuer.Sign(mint.Claims{Subject: "bench-client", Roles: []string{"admin"}, TTL: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	off, err := auth.New(b.Context(), auth.Config{}, zerolog.Nop(), nil)
	if err != nil {
		b.Fatal(err)
	}
	svc := &fakeService{entries: map[string]string{"bench/key": "some value of a few bytes"}}
	for _, c := range []struct {
		name    string
		auth    *auth.Authenticator
		sampler sdktrace.Sampler
	}{
		{"shipped", testAuth, sdktrace.ParentBased(sdktrace.TraceIDRatioBased(0.1))},
		{"auth-off", off, sdktrace.ParentBased(sdktrace.TraceIDRatioBased(0.1))},
		{"tracing-off", testAuth, sdktrace.NeverSample()},
		{"sampling-100", testAuth, sdktrace.ParentBased(sdktrace.AlwaysSample())},
	} {
		b.Run(c.name, func(b *testing.B) {
			prevTP, prevProp := otel.GetTracerProvider(), otel.GetTextMapPropagator()
			// Ended spans go to an in-memory exporter that drops them:
			// the SDK's work is counted, the export's is not.
			tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(c.sampler),
				sdktrace.WithBatcher(discardExporter{}, sdktrace.WithBatchTimeout(100*time.Millisecond)))
			otel.SetTracerProvider(tp)
			otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
			defer func() {
				_ = tp.Shutdown(context.Background())
				otel.SetTracerProvider(prevTP)
				otel.SetTextMapPropagator(prevProp)
			}()
			cfg := DefaultConfig()
			cfg.RateLimit = 1e12 // one client at full speed: admitted, as the bench's clients are
			h := NewHandler(svc, testTokens, c.auth, nil, cfg, zerolog.New(io.Discard), nil)
			req := httptest.NewRequest(http.MethodGet, "/api?key=bench/key", nil)
			req.Header.Set("Authorization", "Bearer "+tok)
			req.Header.Set("X-Request-Id", "0123456789abcdef0123456789abcdef")
			req.Header.Set("X-Real-IP", "127.0.0.2")
			req.Header.Set("User-Agent", "kvbench")
			// The request timed is a hit: a refused token or a missing
			// key would time the error path instead.
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != http.StatusOK {
				b.Fatalf("the benchmark's GET answered %d, want 200: %s", rec.Code, rec.Body)
			}
			w := &discardWriter{h: http.Header{}}
			b.ReportAllocs()
			cpu := cpuTime()
			for b.Loop() {
				clear(w.h)
				h.ServeHTTP(w, req)
			}
			// The process's CPU time, not the wall clock: on a shared
			// machine the wait for a core is not the request's cost.
			b.ReportMetric(float64(cpuTime()-cpu)/float64(b.N), "cpu-ns/op")
		})
	}
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		panic(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

type discardExporter struct{}

func (discardExporter) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discardExporter) Shutdown(context.Context) error                             { return nil }
