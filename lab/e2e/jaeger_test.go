//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/kvstack/kvstack/internal/auth/mint"
	"github.com/kvstack/kvstack/lab/native/engines"
)

// jaegerTrace is the part of Jaeger's /api/traces/{id} answer the tests read.
type jaegerTrace struct {
	Spans []struct {
		SpanID        string `json:"spanID"`
		OperationName string `json:"operationName"`
		ProcessID     string `json:"processID"`
		References    []struct {
			RefType string `json:"refType"`
			TraceID string `json:"traceID"`
			SpanID  string `json:"spanID"`
		} `json:"references"`
		Tags []struct {
			Key   string `json:"key"`
			Value any    `json:"value"`
		} `json:"tags"`
	} `json:"spans"`
	Processes map[string]struct {
		ServiceName string `json:"serviceName"`
	} `json:"processes"`
}

// wantSpan names a span a trace must hold: its service, span kind, and a
// test on its name and tags.
type wantSpan struct {
	what, service, kind string
	match               func(name string, tags map[string]string) bool
}

func opNamed(service, kind, name string) wantSpan {
	return wantSpan{service + " " + name, service, kind, func(n string, _ map[string]string) bool { return n == name }}
}

// processed is a message's CONSUMER span with the outcome the consumer
// recorded when it settled the message.
func processed(queue, outcome string) wantSpan {
	return wantSpan{"kv-consumer process " + queue + " (" + outcome + ")", "kv-consumer", "consumer", func(n string, tags map[string]string) bool {
		return n == "process "+queue && tags["kvstack.outcome"] == outcome
	}}
}

// tagged is w whose span also carries tag key = value.
func tagged(w wantSpan, key, value string) wantSpan {
	match := w.match
	w.what += " with " + key + "=" + value
	w.match = func(n string, tags map[string]string) bool { return match(n, tags) && tags[key] == value }
	return w
}

func dbClient(service, system string) wantSpan {
	return wantSpan{service + " " + system + " call", service, "client", func(_ string, tags map[string]string) bool {
		return tags["db.system.name"] == system || tags["db.system"] == system
	}}
}

// traceIDOf is the trace id in a response's traceparent.
func traceIDOf(t *testing.T, r response) string {
	t.Helper()
	parts := strings.Split(r.header.Get("traceparent"), "-")
	if len(parts) != 4 || len(parts[1]) != 32 {
		t.Fatalf("traceparent %q is not W3C", r.header.Get("traceparent"))
	}
	return parts[1]
}

// requireJaegerTrace polls Jaeger until the trace holds every wanted span,
// then checks that it is one piece: every span's parent is in it, and one
// span is the root.
func requireJaegerTrace(t *testing.T, h *harness, traceID string, wants ...wantSpan) jaegerTrace {
	t.Helper()
	jaeger := "http://" + h.addr("KV_JAEGER_UI_PORT")
	h.mustAnswer(t, "Jaeger", jaeger+"/api/services")
	var tr jaegerTrace
	eventually(t, 30*time.Second, func() string {
		r, err := h.try(http.MethodGet, jaeger+"/api/traces/"+url.PathEscape(traceID), nil)
		if err != nil || r.status != http.StatusOK {
			return fmt.Sprintf("trace %s not in Jaeger yet: %v %d", traceID, err, r.status)
		}
		var body struct{ Data []jaegerTrace }
		if err := json.Unmarshal(r.body, &body); err != nil || len(body.Data) != 1 {
			return fmt.Sprintf("trace %s: %v, %d traces", traceID, err, len(body.Data))
		}
		tr = body.Data[0]
		var missing []string
		for _, w := range wants {
			if !tr.has(w) {
				missing = append(missing, w.what)
			}
		}
		if len(missing) > 0 {
			return fmt.Sprintf("trace %s lacks %v; has %s", traceID, missing, tr.summary())
		}
		return ""
	})
	ids := map[string]bool{}
	for _, s := range tr.Spans {
		ids[s.SpanID] = true
	}
	// Jaeger turns the parent into a CHILD_OF reference and links into
	// FOLLOWS_FROM ones, and may keep only one when a link names the parent
	// (as the consumer's span does): any reference within the trace counts.
	roots := 0
	for _, s := range tr.Spans {
		refs := 0
		for _, ref := range s.References {
			if ref.TraceID != traceID {
				continue
			}
			refs++
			if !ids[ref.SpanID] {
				t.Errorf("span %q: %s %s is not in the trace", s.OperationName, ref.RefType, ref.SpanID)
			}
		}
		if refs == 0 {
			roots++
		}
	}
	if roots != 1 {
		t.Errorf("trace %s has %d roots, want 1: %s", traceID, roots, tr.summary())
	}
	return tr
}

// evict drops key from the stack's Redis cache, as an expiry would, with
// the stack's checks' client (engines.RedisClient: over TLS, with the
// default user's password, on the stack's own engines).
func (h *harness) evict(t *testing.T, key string) {
	t.Helper()
	rdb, err := engines.RedisClient(h.s)
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if n, err := rdb.Del(ctx, h.s.RedisKeyPrefix()+key).Result(); err != nil || n != 1 {
		t.Fatalf("Redis DEL %s: %d, %v (want 1 key removed)", key, n, err)
	}
}

func (tr jaegerTrace) has(w wantSpan) bool {
	for _, s := range tr.Spans {
		tags := map[string]string{}
		for _, tag := range s.Tags {
			tags[tag.Key] = fmt.Sprint(tag.Value)
		}
		if tr.Processes[s.ProcessID].ServiceName == w.service && tags["span.kind"] == w.kind && w.match(s.OperationName, tags) {
			return true
		}
	}
	return false
}

func (tr jaegerTrace) summary() string {
	var parts []string
	for _, s := range tr.Spans {
		parts = append(parts, tr.Processes[s.ProcessID].ServiceName+":"+s.OperationName)
	}
	return strings.Join(parts, ", ")
}

// TestWriteIsOneTraceInJaeger: a PUT and a DELETE through nginx each make
// ONE trace in the stack's Jaeger, from the API's server span through the
// publish and the consumer's processing to its PostgreSQL and Redis calls.
// The server span and the consumer's process span name the writer, the
// token's subject, as enduser.id (docs/DESIGN.md, Attribution).
func TestWriteIsOneTraceInJaeger(t *testing.T) {
	h := newHarness(t)
	key := uniq("e2e-traced")
	queueAdd, queueDel := envOr("RABBITMQ_QUEUE_ADD", "add_key"), envOr("RABBITMQ_QUEUE_DEL", "del_key")
	// A token of its own subject, so the spans cannot name the writer by
	// chance.
	writer := uniq("e2e-writer")
	token := "Bearer " + h.sign(t, mint.Claims{Subject: writer, Roles: []string{"admin"}})
	as := func(method string, body []byte) response {
		return h.do(t, method, "/api", body, "Authorization", token)
	}

	putBody, _ := json.Marshal(map[string]string{"key": key, "value": "v"})
	put := as(http.MethodPut, putBody)
	if put.status != http.StatusAccepted {
		t.Fatalf("PUT = %d %s", put.status, put.body)
	}
	requireJaegerTrace(t, h, traceIDOf(t, put),
		tagged(opNamed("kv-api", "server", "PUT /api"), "enduser.id", writer),
		opNamed("kv-api", "producer", "publish "+queueAdd),
		tagged(processed(queueAdd, "applied"), "enduser.id", writer),
		dbClient("kv-consumer", "postgresql"),
		dbClient("kv-consumer", "redis"),
	)

	body, _ := json.Marshal(map[string]string{"key": key})
	del := as(http.MethodDelete, body)
	if del.status != http.StatusAccepted {
		t.Fatalf("DELETE = %d %s", del.status, del.body)
	}
	requireJaegerTrace(t, h, traceIDOf(t, del),
		tagged(opNamed("kv-api", "server", "DELETE /api"), "enduser.id", writer),
		opNamed("kv-api", "producer", "publish "+queueDel),
		tagged(processed(queueDel, "applied"), "enduser.id", writer),
		dbClient("kv-consumer", "postgresql"),
		dbClient("kv-consumer", "redis"),
	)
}

// TestReadTracesInJaeger: a GET that misses the cache shows its Redis and
// PostgreSQL calls; one that hits shows Redis alone.
func TestReadTracesInJaeger(t *testing.T) {
	h := newHarness(t)
	key := uniq("e2e-read-traced")
	if r := h.put(t, key, "v"); r.status != http.StatusAccepted {
		t.Fatalf("PUT = %d %s", r.status, r.body)
	}
	// Wait until the write is applied, then drop its cache entry from
	// Redis, so that the next read misses. Both replicas share the cache.
	eventually(t, 20*time.Second, func() string {
		if r := h.do(t, http.MethodGet, "/api?key="+url.QueryEscape(key), nil); r.status != http.StatusOK {
			return fmt.Sprintf("GET %s = %d", key, r.status)
		}
		return ""
	})
	h.evict(t, key)

	miss := h.do(t, http.MethodGet, "/api?key="+url.QueryEscape(key), nil)
	if got := miss.json(t)["source"]; got != "postgres" {
		t.Fatalf("GET after eviction: source %v, want postgres", got)
	}
	requireJaegerTrace(t, h, traceIDOf(t, miss),
		opNamed("kv-api", "server", "GET /api"),
		dbClient("kv-api", "redis"),
		dbClient("kv-api", "postgresql"),
	)

	hit := h.do(t, http.MethodGet, "/api?key="+url.QueryEscape(key), nil)
	if got := hit.json(t)["source"]; got != "redis" {
		t.Fatalf("second GET: source %v, want redis", got)
	}
	tr := requireJaegerTrace(t, h, traceIDOf(t, hit),
		opNamed("kv-api", "server", "GET /api"),
		dbClient("kv-api", "redis"),
	)
	if tr.has(dbClient("kv-api", "postgresql")) {
		t.Fatalf("a cache hit queried PostgreSQL: %s", tr.summary())
	}
}
