package httpapi

import (
	"context"
	"net/http"
	"regexp"
	"runtime/debug"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/google/uuid"
	"github.com/rs/zerolog"

	"github.com/kvstack/kvstack/internal/telemetry"
)

type ctxKey int

const requestIDKey ctxKey = iota

// validRequestID accepts the ids nginx and common clients generate; anything
// else is replaced, so a client cannot inject text into our logs.
var validRequestID = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,128}$`)

// requestID takes the X-Request-Id the proxy set, or makes one, and echoes it
// on the response.
func requestID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get("X-Request-Id")
		if !validRequestID.MatchString(id) {
			id = uuid.NewString()
		}
		w.Header().Set("X-Request-Id", id)
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), requestIDKey, id)))
	})
}

// logFor returns the request's logger: request id, and trace and span ids
// when the request is traced.
func (a *api) logFor(r *http.Request) *zerolog.Logger {
	l := telemetry.WithTrace(r.Context(), a.log)
	if id, ok := r.Context().Value(requestIDKey).(string); ok {
		l = l.With().Str("request_id", id).Logger()
	}
	return &l
}

// accessLog writes one line per request. Keys and values are never logged.
func (a *api) accessLog(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		status, bytes := serve(next, w, r)
		l := a.logFor(r)
		ev := l.Info()
		if status >= 500 {
			ev = l.Warn()
		}
		ev.Str("method", r.Method).
			Str("route", routePattern(r)).
			Int("status", status).
			Int("bytes", bytes).
			Dur("duration_ms", time.Since(start)).
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
		status, _ := serve(next, w, r)
		a.metrics.Observe(r.Context(), metricRoute(r), methodLabel(r.Method), status, time.Since(start))
	})
}

// serve runs next and reports the status it answered (200 when it wrote
// nothing else) and how many body bytes it wrote.
func serve(next http.Handler, w http.ResponseWriter, r *http.Request) (status, bytes int) {
	ww := middleware.NewWrapResponseWriter(w, r.ProtoMajor)
	next.ServeHTTP(ww, r)
	if status = ww.Status(); status == 0 {
		status = http.StatusOK
	}
	return status, ww.BytesWritten()
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
