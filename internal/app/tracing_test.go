package app

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/kvstack/kvstack/internal/kv"
	"github.com/kvstack/kvstack/internal/syncbuf"
)

// traceOf returns the ended spans of one trace.
func traceOf(id trace.TraceID) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range spans.Ended() {
		if s.SpanContext().TraceID() == id {
			out = append(out, s)
		}
	}
	return out
}

func traceIDOf(t *testing.T, r response) trace.TraceID {
	t.Helper()
	parts := strings.Split(r.header.Get("traceparent"), "-")
	if len(parts) != 4 {
		t.Fatalf("response traceparent %q is not W3C", r.header.Get("traceparent"))
	}
	id, err := trace.TraceIDFromHex(parts[1])
	if err != nil {
		t.Fatalf("traceparent %q: %v", r.header.Get("traceparent"), err)
	}
	return id
}

// spanWant picks one span of a trace.
type spanWant struct {
	what string
	kind trace.SpanKind
	ok   func(sdktrace.ReadOnlySpan) bool
}

func named(name string, kind trace.SpanKind) spanWant {
	return spanWant{name, kind, func(s sdktrace.ReadOnlySpan) bool { return s.Name() == name }}
}

// applied is the CONSUMER span of a message that was applied: the
// runner records its outcome on it.
func applied(name string) spanWant {
	return spanWant{name + " (applied)", trace.SpanKindConsumer, func(s sdktrace.ReadOnlySpan) bool {
		for _, a := range s.Attributes() {
			if a.Key == "kvstack.outcome" {
				return s.Name() == name && a.Value.AsString() == "applied"
			}
		}
		return false
	}}
}

func dbSpan(system string) spanWant {
	return spanWant{system + " client span", trace.SpanKindClient, func(s sdktrace.ReadOnlySpan) bool {
		for _, a := range s.Attributes() {
			if (a.Key == "db.system.name" || a.Key == "db.system") && a.Value.AsString() == system {
				return true
			}
		}
		return false
	}}
}

// requireTrace waits until the trace holds a span for each want, then
// checks it is one piece: every span's parent is in the trace.
func requireTrace(t *testing.T, id trace.TraceID, wants ...spanWant) {
	t.Helper()
	var missing []string
	eventually(t, 20*time.Second, "the trace complete", func() (bool, string) {
		got := traceOf(id)
		missing = missing[:0]
		for _, w := range wants {
			found := false
			for _, s := range got {
				if w.ok(s) && s.SpanKind() == w.kind {
					found = true
				}
			}
			if !found {
				missing = append(missing, w.what)
			}
		}
		return len(missing) == 0, fmt.Sprintf("missing %v among %s", missing, names(got))
	})
	got := traceOf(id)
	ids := map[trace.SpanID]bool{}
	for _, s := range got {
		ids[s.SpanContext().SpanID()] = true
	}
	roots := 0
	for _, s := range got {
		switch {
		case !s.Parent().IsValid():
			roots++
		case !ids[s.Parent().SpanID()]:
			t.Errorf("span %q has a parent outside the trace", s.Name())
		}
	}
	if roots != 1 {
		t.Errorf("trace has %d roots, want 1: %s", roots, names(got))
	}
}

func names(spans []sdktrace.ReadOnlySpan) string {
	var n []string
	for _, s := range spans {
		n = append(n, fmt.Sprintf("%s(%s)", s.Name(), s.SpanKind()))
	}
	return strings.Join(n, ", ")
}

// TestOneTracePerWrite: a PUT and a DELETE each yield ONE trace holding the
// API's server span, the publish, the consumer's processing and the
// PostgreSQL and Redis calls of the apply.
func TestOneTracePerWrite(t *testing.T) {
	s := newStack(t)
	s.startAPI()
	s.startConsumer()

	for _, tc := range []struct {
		method, body string
		kind         kv.Kind
		queue        string
	}{
		{"PUT", `{"key":"traced","value":"v"}`, kv.KindPut, s.mq.QueueAdd},
		{"DELETE", `{"key":"traced"}`, kv.KindDelete, s.mq.QueueDel},
	} {
		t.Run(tc.method, func(t *testing.T) {
			r := s.do(tc.method, "/api", tc.body)
			if r.status != 202 {
				t.Fatalf("%s = %d %v", tc.method, r.status, r.body)
			}
			requireTrace(t, traceIDOf(t, r),
				named(tc.method+" /api", trace.SpanKindServer),
				named("publish "+tc.queue, trace.SpanKindProducer),
				applied("process "+tc.queue),
				dbSpan("postgresql"),
				dbSpan("redis"),
			)
		})
	}
}

// TestReadTraces: a GET that misses the cache shows its Redis and
// PostgreSQL calls; a GET that hits shows Redis alone.
func TestReadTraces(t *testing.T) {
	s := newStack(t)
	s.startAPI()
	s.startConsumer()
	op := s.put("read-me", "v")
	s.waitStored(op)
	s.waitCached(op)
	if err := s.rdb.Del(t.Context(), s.conCfg.Redis.KeyPrefix+"read-me").Err(); err != nil {
		t.Fatal(err)
	}

	miss := s.do("GET", "/api?key=read-me", "")
	if miss.body["source"] != "postgres" {
		t.Fatalf("first GET = %v, want a miss", miss.body)
	}
	requireTrace(t, traceIDOf(t, miss), named("GET /api", trace.SpanKindServer), dbSpan("redis"), dbSpan("postgresql"))

	hit := s.do("GET", "/api?key=read-me", "")
	if hit.body["source"] != "redis" {
		t.Fatalf("second GET = %v, want a hit", hit.body)
	}
	id := traceIDOf(t, hit)
	requireTrace(t, id, named("GET /api", trace.SpanKindServer), dbSpan("redis"))
	for _, sp := range traceOf(id) {
		if dbSpan("postgresql").ok(sp) {
			t.Fatalf("a cache hit queried PostgreSQL: %s", names(traceOf(id)))
		}
	}
}

// TestRequestLogCarriesTraceID: the log line a request writes carries the
// trace id its response names.
func TestRequestLogCarriesTraceID(t *testing.T) {
	s := newStack(t)
	var logs syncbuf.Buffer
	s.log = zerolog.New(&logs)
	s.startAPI()
	r := s.do("GET", "/api?key=nothing-here", "")
	id := traceIDOf(t, r).String()
	eventually(t, 5*time.Second, "a log line with the trace id", func() (bool, string) {
		for _, line := range strings.Split(logs.String(), "\n") {
			if strings.Contains(line, `"trace_id":"`+id+`"`) && strings.Contains(line, `"span_id":"`) {
				return true, ""
			}
		}
		return false, logs.String()
	})
}
