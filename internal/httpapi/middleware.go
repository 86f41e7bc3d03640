package httpapi

import (
	"net/http"
	"runtime/debug"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"
	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/trace"

	"github.com/kvstack/kvstack/internal/telemetry"
)

// requestID takes the X-Request-Id the proxy set (validRequestID), or
// makes one, and echoes it on the response.
func requestID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get("X-Request-Id")
		if !validRequestID(id) {
			id = uuid.NewString()
		}
		w.Header().Set("X-Request-Id", id)
		exchangeOf(r.Context()).requestID = id
		next.ServeHTTP(w, r)
	})
}

// validRequestID accepts the ids nginx and common clients generate
// (1–128 of A–Z a–z 0–9 . _ : -); anything else is replaced, so a client
// cannot inject text into our logs.
func validRequestID(id string) bool {
	if len(id) < 1 || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		switch c := id[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '.', c == '_', c == ':', c == '-':
		default:
			return false
		}
	}
	return true
}

// logFor returns the request's logger: request id, and trace and span ids
// when the request is traced.
func (a *api) logFor(r *http.Request) *zerolog.Logger {
	l := telemetry.WithTrace(r.Context(), a.log)
	if e := exchangeOf(r.Context()); e != nil && e.requestID != "" {
		l = l.With().Str("request_id", e.requestID).Logger()
	}
	return &l
}

// accessLog writes one line per request. Keys and values are never logged.
// Its fields go on the line itself rather than on a logger made for the
// request (logFor): the same JSON for two allocations fewer.
func (a *api) accessLog(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		next.ServeHTTP(w, r)
		e := exchangeOf(r.Context())
		status := e.answered()
		ev := a.log.Info()
		if status >= 500 {
			ev = a.log.Warn()
		}
		if sc := trace.SpanContextFromContext(r.Context()); sc.IsValid() {
			ev = ev.Stringer("trace_id", sc.TraceID()).Stringer("span_id", sc.SpanID())
		}
		if e.principal != nil && e.principal.Subject != "" {
			ev = ev.Str("enduser", e.principal.Subject)
		}
		ev.Str("request_id", e.requestID).
			Str("method", r.Method).
			Str("route", routePattern(r)).
			Int("status", status).
			Int("bytes", e.bytes).
			Dur("duration_ms", time.Since(e.start)).
			Msg("request")
	})
}

// measure records each request's route (metricRoute), method, status class
// and duration.
func (a *api) measure(next http.Handler) http.Handler {
	if a.metrics == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer a.metrics.Start()()
		start := time.Now()
		next.ServeHTTP(w, r)
		a.metrics.Observe(r.Context(), metricRoute(r), methodLabel(r.Method), exchangeOf(r.Context()).answered(), time.Since(start))
	})
}

// methodLabel keeps a client's made-up method out of the metric labels.
func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPut, http.MethodDelete, http.MethodPost, http.MethodPatch, http.MethodOptions:
		return m
	}
	return "other"
}

// recoverPanic turns a panic into a logged 500 instead of a dropped
// connection. http.ErrAbortHandler passes through: it is how a handler
// aborts a response it has already started.
func (a *api) recoverPanic(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			v := recover()
			if v == nil {
				return
			}
			if v == http.ErrAbortHandler {
				panic(v)
			}
			a.logFor(r).Error().Interface("panic", v).Bytes("stack", debug.Stack()).Msg("handler panicked")
			writeError(w, r, http.StatusInternalServerError, "internal", "internal error")
		}()
		next.ServeHTTP(w, r)
	})
}

// routePattern is the matched route template ("/api"), never the raw URL,
// so that it can label metrics and name spans.
func routePattern(r *http.Request) string {
	if rc := chi.RouteContext(r.Context()); rc != nil {
		if p := rc.RoutePattern(); p != "" {
			return p
		}
	}
	return "unmatched"
}

// metricRoute is the route label of a request: its route template, but
// reads and writes that wait are told apart ("/api:min_version",
// "/api:wait"), since their latency is the queue's by design and would
// otherwise hide the API's own in /api's. (Not "/api?…": a label that
// looks like a query string would look like a raw URL.)
func metricRoute(r *http.Request) string {
	route := routePattern(r)
	if route != "/api" || r.URL.RawQuery == "" {
		return route
	}
	param, label := paramWait, "/api:wait"
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		param, label = paramMinVersion, "/api:min_version"
	}
	if q, err := queryOf(r); err == nil && q.Has(param) {
		return label
	}
	return route
}
