package app

import (
	"net/http"
	"strings"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
)

// traceHTTP starts a server span per API request, continuing the caller's
// trace when it sent a traceparent; the router names it after its route.
// Probes, scrapes and profiles are not traced: they would drown the traces
// that matter.
//
// It wraps the whole server, outside any http.ServeMux, on purpose: below
// one, otelhttp renames the span after the mux's pattern ("/") once the
// request is served, undoing the router's name.
func traceHTTP(next http.Handler) http.Handler {
	return otelhttp.NewHandler(next, "http.server",
		otelhttp.WithFilter(func(r *http.Request) bool {
			switch p := r.URL.Path; {
			case p == "/healthz", p == "/readyz", p == "/metrics", strings.HasPrefix(p, "/debug/"):
				return false
			}
			return true
		}),
	)
}
