package httpapi

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
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
	svc := &fakeService{entries: map[string]string{"bench/key": "some value of a few bytes"}}
	benchLayers(b, svc, http.StatusOK, httptest.NewRequest(http.MethodGet, "/api?key=bench/key", nil), nil)
}

// The same for a PUT accepted, the publish left out (the service accepts
// at once): what auth (the token from the cache, the client's rate limit,
// the write right on the key, the writer in the context) and tracing add
// to the handler's work. The bench's "auth off" variant read +27 % of the
// replicas' CPU per PUT on 7 December; this says how much of it is auth's.
func BenchmarkPutLayers(b *testing.B) {
	svc := &fakeService{}
	const body = `{"key":"bench/key","value":"a value of some thirty bytes.."}`
	req := httptest.NewRequest(http.MethodPut, "/api", nil)
	req.Header.Set("Content-Type", "application/json")
	benchLayers(b, svc, http.StatusAccepted, req, func(r *http.Request) {
		svc.writes = svc.writes[:0] // the fake keeps what it accepts
		r.Body = io.NopCloser(strings.NewReader(body))
	})
}

// benchLayers times the handler serving req, answered with want, as
// shipped and with one layer changed. The request is built once, outside
// the timed loop, as a server's is by net/http; rearm, when not nil, makes
// it ready to be served again (a body to read) before each serving.
func benchLayers(b *testing.B, svc *fakeService, want int, req *http.Request, rearm func(*http.Request)) {
	tok, err := testIssuer.Sign(mint.Claims{Subject: "bench-client", Roles: []string{"admin"}, TTL: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	off, err := auth.New(b.Context(), auth.Config{}, zerolog.Nop(), nil)
	if err != nil {
		b.Fatal(err)
	}
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
			req.Header.Set("Authorization", "Bearer "+tok)
			req.Header.Set("X-Request-Id", "0123456789abcdef0123456789abcdef")
			req.Header.Set("X-Real-IP", "127.0.0.2")
			req.Header.Set("User-Agent", "kvbench")
			serve := func(w http.ResponseWriter) {
				if rearm != nil {
					rearm(req)
				}
				h.ServeHTTP(w, req)
			}
			// The request timed is the one wanted: a refused token or a
			// missing key would time the error path instead.
			rec := httptest.NewRecorder()
			serve(rec)
			if rec.Code != want {
				b.Fatalf("the benchmark's request answered %d, want %d: %s", rec.Code, want, rec.Body)
			}
			w := &discardWriter{h: http.Header{}}
			b.ReportAllocs()
			cpu := cpuTime()
			for b.Loop() {
				clear(w.h)
				serve(w)
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
