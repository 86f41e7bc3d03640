package telemetry

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"
)

// collector records the bodies OTLP/HTTP requests bring.
type collector struct {
	mu     sync.Mutex
	bodies [][]byte
	status []int // answered in turn, then 200
	header http.Header
}

func (c *collector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.header = r.Header.Clone()
	c.bodies = append(c.bodies, b)
	if len(c.status) > 0 {
		w.WriteHeader(c.status[0])
		c.status = c.status[1:]
		return
	}
	w.Header().Set("Content-Type", "application/x-protobuf")
}

func (c *collector) last(t *testing.T) *coltracepb.ExportTraceServiceRequest {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.bodies) == 0 {
		t.Fatal("nothing exported")
	}
	var req coltracepb.ExportTraceServiceRequest
	if err := proto.Unmarshal(c.bodies[len(c.bodies)-1], &req); err != nil {
		t.Fatal(err)
	}
	return &req
}

// testSpans cover what the exporter meets: every attribute type, events,
// links, statuses, remote and local parents, trace state, several scopes
// and two resources.
func testSpans() []sdktrace.ReadOnlySpan {
	res := resource.NewSchemaless(attribute.String("service.name", "kv-api"), attribute.Int("process.pid", 42))
	other := resource.NewWithAttributes("https://opentelemetry.io/schemas/1.43.0", attribute.String("service.name", "kv-consumer"))
	ts, _ := trace.ParseTraceState("kv=1,other=x")
	sc := func(tid, sid byte, sampled, remote bool) trace.SpanContext {
		cfg := trace.SpanContextConfig{TraceID: trace.TraceID{tid, 1}, SpanID: trace.SpanID{sid, 2}, Remote: remote, TraceState: ts}
		if sampled {
			cfg.TraceFlags = trace.FlagsSampled
		}
		return trace.NewSpanContext(cfg)
	}
	t0 := time.Unix(1_800_000_000, 123456789)
	httpScope := instrumentation.Scope{Name: "github.com/kvstack/kvstack/internal/httpapi"}
	redisScope := instrumentation.Scope{Name: "github.com/redis/go-redis/extra/redisotel", Version: "semver:9.23.0",
		Attributes: attribute.NewSet(attribute.String("scope.attr", "x"))}
	stubs := tracetest.SpanStubs{
		{
			Name: "GET /api", SpanContext: sc(1, 1, true, false), Parent: sc(1, 9, true, true), SpanKind: trace.SpanKindServer,
			StartTime: t0, EndTime: t0.Add(time.Millisecond), Resource: res, InstrumentationScope: httpScope,
			Attributes: []attribute.KeyValue{
				attribute.String("http.request.method", "GET"), attribute.String("empty", ""), attribute.Int("http.response.status_code", 200),
				attribute.Int64("negative", -7), attribute.Float64("kvstack.duration_ms", 1.25), attribute.Bool("yes", true), attribute.Bool("no", false),
				attribute.StringSlice("ss", []string{"a", ""}), attribute.IntSlice("is", []int{1, -2}), attribute.Float64Slice("fs", []float64{0.5}),
				attribute.BoolSlice("bs", []bool{true, false}), {Key: "nothing"},
			},
			Status: sdktrace.Status{Code: codes.Error, Description: "boom"}, DroppedAttributes: 3,
		},
		{
			Name: "hmget", SpanContext: sc(1, 3, true, false), Parent: sc(1, 1, true, false), SpanKind: trace.SpanKindClient,
			StartTime: t0, EndTime: t0.Add(time.Microsecond), Resource: res, InstrumentationScope: redisScope,
			Attributes: []attribute.KeyValue{attribute.String("db.system", "redis")}, Status: sdktrace.Status{Code: codes.Ok},
		},
		{
			Name: "process add_key", SpanContext: sc(2, 4, true, false), Parent: sc(2, 5, true, true), SpanKind: trace.SpanKindConsumer,
			StartTime: t0, EndTime: t0.Add(time.Second), Resource: other, InstrumentationScope: httpScope,
			Events: []sdktrace.Event{
				{Name: "INSERT kv_store", Time: t0.Add(time.Millisecond), Attributes: []attribute.KeyValue{attribute.Int("db.operation.batch.size", 100)}, DroppedAttributeCount: 1},
				{Name: "bare", Time: t0},
			},
			Links: []sdktrace.Link{
				{SpanContext: sc(3, 6, true, false), Attributes: []attribute.KeyValue{attribute.String("k", "v")}, DroppedAttributeCount: 2},
				{SpanContext: sc(4, 7, false, true)},
			},
			DroppedEvents: 1, DroppedLinks: 4, ChildSpanCount: 2,
		},
		{
			Name: "root", SpanContext: sc(5, 8, true, false), SpanKind: trace.SpanKindInternal,
			StartTime: t0, EndTime: t0, Resource: res, InstrumentationScope: httpScope,
		},
		{
			Name: "no scope", SpanContext: sc(6, 9, true, false), SpanKind: trace.SpanKind(99),
			StartTime: t0, EndTime: t0, Resource: res,
		},
	}
	return stubs.Snapshots()
}

// The request is otlptracehttp's, message for message.
func TestOTLPExporterSendsWhatOtlptracehttpSends(t *testing.T) {
	theirs, ours := &collector{}, &collector{}
	srvTheirs, srvOurs := httptest.NewServer(theirs), httptest.NewServer(ours)
	defer srvTheirs.Close()
	defer srvOurs.Close()
	ctx := context.Background()
	official, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(srvTheirs.URL+"/v1/traces"))
	if err != nil {
		t.Fatal(err)
	}
	defer official.Shutdown(ctx)
	exp := NewOTLPExporter(srvOurs.URL+"/v1/traces", http.Header{"X-Tenant": {"kv"}}, 5*time.Second)
	for range 2 { // the second export reuses the encoder's buffers
		spans := testSpans()
		if err := official.ExportSpans(ctx, spans); err != nil {
			t.Fatal(err)
		}
		if err := exp.ExportSpans(ctx, spans); err != nil {
			t.Fatal(err)
		}
		want, got := theirs.last(t), ours.last(t)
		// The official exporter walks a map of resources: order them alike.
		if len(want.ResourceSpans) == 2 && len(got.ResourceSpans) == 2 &&
			want.ResourceSpans[0].SchemaUrl != got.ResourceSpans[0].SchemaUrl {
			want.ResourceSpans[0], want.ResourceSpans[1] = want.ResourceSpans[1], want.ResourceSpans[0]
		}
		if !proto.Equal(got, want) {
			t.Fatalf("requests differ:\n ours %v\n theirs %v", got, want)
		}
	}
	if ours.header.Get("Content-Type") != "application/x-protobuf" || ours.header.Get("X-Tenant") != "kv" {
		t.Errorf("headers %v, want the protobuf content type and the configured header", ours.header)
	}
}

func TestOTLPExporterRetriesWhatMaySucceed(t *testing.T) {
	c := &collector{status: []int{http.StatusServiceUnavailable, http.StatusTooManyRequests}}
	srv := httptest.NewServer(c)
	defer srv.Close()
	exp := NewOTLPExporter(srv.URL+"/v1/traces", nil, 5*time.Second)
	if err := exp.ExportSpans(context.Background(), testSpans()); err != nil {
		t.Fatalf("after a 503 and a 429 the third try succeeds: %v", err)
	}
	if n := len(c.bodies); n != 3 {
		t.Errorf("%d requests, want 3", n)
	}
	c.status = []int{http.StatusBadRequest}
	if err := exp.ExportSpans(context.Background(), testSpans()); err == nil {
		t.Error("a 400 is an error")
	}
	if n := len(c.bodies); n != 4 {
		t.Errorf("a 400 was retried: %d requests, want 4", n)
	}
}

func TestOTLPExporterGivesUpWithinItsTimeout(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		calls.Add(1)
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	exp := NewOTLPExporter(srv.URL+"/v1/traces", nil, 300*time.Millisecond)
	if err := exp.ExportSpans(context.Background(), testSpans()); err == nil {
		t.Fatal("a collector that never takes the spans is an error")
	}
	if calls.Load() < 2 {
		t.Errorf("%d attempts, want retries within the timeout", calls.Load())
	}
}

func TestOTLPFromEnv(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		url  string
		ok   bool
	}{
		{"default", nil, "http://localhost:4318/v1/traces", true},
		{"base", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:12318/"}, "http://127.0.0.1:12318/v1/traces", true},
		{"traces URL wins", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://a:1", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://b:2/x"}, "https://b:2/x", true},
		{"certificate: otlptracehttp's", map[string]string{"OTEL_EXPORTER_OTLP_CERTIFICATE": "/ca.pem"}, "", false},
		{"gzip: otlptracehttp's", map[string]string{"OTEL_EXPORTER_OTLP_TRACES_COMPRESSION": "gzip"}, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, k := range []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_CERTIFICATE", "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION"} {
				t.Setenv(k, tc.env[k])
			}
			e, ok, err := otlpFromEnv()
			if err != nil || ok != tc.ok || (ok && e.url != tc.url) {
				t.Fatalf("got %v %v %v, want %s %v", e, ok, err, tc.url, tc.ok)
			}
		})
	}
	t.Setenv("OTEL_EXPORTER_OTLP_HEADERS", "a=1,b=x%20y")
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "b=2")
	t.Setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "2500")
	e, _, err := otlpFromEnv()
	if err != nil || e.header.Get("a") != "1" || e.header.Get("b") != "2" || e.timeout != 2500*time.Millisecond {
		t.Errorf("headers %v, timeout %v, err %v", e.header, e.timeout, err)
	}
	t.Setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "soon")
	if _, _, err := otlpFromEnv(); err == nil {
		t.Error("a bad timeout is an error")
	}
}

// BenchmarkExport compares the two exporters on a batch of a GET hit's
// spans (a server span and a Redis client span each).
func BenchmarkExport(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.Copy(io.Discard, r.Body) }))
	defer srv.Close()
	spans := hitSpans()
	var batch []sdktrace.ReadOnlySpan
	for range 256 {
		batch = append(batch, spans...)
	}
	official, _ := otlptracehttp.New(context.Background(), otlptracehttp.WithEndpointURL(srv.URL+"/v1/traces"))
	for _, exp := range []struct {
		name string
		e    sdktrace.SpanExporter
	}{{"otlptracehttp", official}, {"ours", NewOTLPExporter(srv.URL+"/v1/traces", nil, 5*time.Second)}} {
		b.Run(exp.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := exp.e.ExportSpans(context.Background(), batch); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(batch)), "ns/span")
		})
	}
}

// hitSpans are a GET hit's two spans, with the attributes they have.
func hitSpans() []sdktrace.ReadOnlySpan {
	res := resource.NewSchemaless(attribute.String("service.name", "kv-api"), attribute.String("service.instance.id", "api1"),
		attribute.String("host.name", "vm"), attribute.Int("process.pid", 42), attribute.String("telemetry.sdk.language", "go"))
	t0 := time.Now()
	server := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{1}, SpanID: trace.SpanID{1}, TraceFlags: trace.FlagsSampled})
	client := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{1}, SpanID: trace.SpanID{2}, TraceFlags: trace.FlagsSampled})
	return tracetest.SpanStubs{
		{Name: "GET /api", SpanContext: server, SpanKind: trace.SpanKindServer, StartTime: t0, EndTime: t0.Add(time.Millisecond), Resource: res,
			InstrumentationScope: instrumentation.Scope{Name: "github.com/kvstack/kvstack/internal/httpapi"},
			Attributes: []attribute.KeyValue{
				attribute.String("server.address", "kv_api"), attribute.String("http.request.method", "GET"), attribute.String("url.scheme", "http"),
				attribute.String("network.peer.address", "127.0.0.1"), attribute.Int("network.peer.port", 51234), attribute.String("user_agent.original", "wrk"),
				attribute.String("client.address", "127.0.0.1"), attribute.String("url.path", "/api"), attribute.String("network.protocol.version", "1.1"),
				attribute.Int("http.response.body.size", 204), attribute.Int("http.response.status_code", 200), attribute.String("http.route", "/api"),
			}},
		{Name: "hmget", SpanContext: client, Parent: server, SpanKind: trace.SpanKindClient, StartTime: t0, EndTime: t0.Add(100 * time.Microsecond), Resource: res,
			InstrumentationScope: instrumentation.Scope{Name: "github.com/redis/go-redis/extra/redisotel", Version: "semver:9.23.0"},
			Attributes: []attribute.KeyValue{attribute.String("db.system", "redis"), attribute.String("db.connection_string", "redis://127.0.0.1:6379"),
				attribute.String("server.address", "127.0.0.1"), attribute.Int("server.port", 6379)}},
	}.Snapshots()
}
