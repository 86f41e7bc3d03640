// Package httpapi is the HTTP edge of kvstack: routes, handlers (decode,
// validate, call the service, respond), the one mapping from domain errors to
// status codes, and the middleware around them.
package httpapi

import (
	"context"
	"net/http"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/rs/zerolog"

	"github.com/kvstack/kvstack/internal/auth"
	"github.com/kvstack/kvstack/internal/envdefault"
	"github.com/kvstack/kvstack/internal/health"
	"github.com/kvstack/kvstack/internal/kv"
	"github.com/kvstack/kvstack/internal/metrics"
)

// Service is what the handlers need from the domain: a read, a write and a
// listing, each handed the request as the handler parsed it. The service
// validates it against its own limits and bounds its wait; the handler
// checks only the request's form and who may make it.
type Service interface {
	Read(ctx context.Context, req kv.ReadRequest) (kv.Read, error)
	Write(ctx context.Context, req kv.WriteRequest) (kv.Write, error)
	List(ctx context.Context, req kv.ListRequest) ([]kv.Entry, error)
}

// Readiness is what /readyz reports: the process's health.Monitor.
type Readiness interface {
	Report() health.Report
}

// Config holds the edge's own limits.
type Config struct {
	// MaxBodyBytes bounds a request body; larger bodies get 413. It must
	// leave room for the largest value JSON-escaped, and match nginx's
	// client_max_body_size.
	MaxBodyBytes int64 `env:"KV_MAX_BODY_BYTES" envDefault:"1048576"`
	// ListPageSize is how many rows /api/all fetches per query while
	// streaming; MaxListLimit bounds its ?limit=.
	ListPageSize int `env:"KV_LIST_PAGE_SIZE" envDefault:"500"`
	MaxListLimit int `env:"KV_MAX_LIST_LIMIT" envDefault:"1000"`
	// RetryAfter is what a 503 tells clients to wait.
	RetryAfter time.Duration `env:"KV_RETRY_AFTER" envDefault:"1s"`
	// AccessLog writes one log line per request; off, only warnings and
	// errors are logged (lab/bench/NOTES.md measures what the line costs).
	AccessLog bool `env:"KV_ACCESS_LOG" envDefault:"true"`
	// RateLimit is the requests a second one client (a token's subject)
	// may send to this replica; past it and RateBurst, 429 rate_limited
	// with Retry-After. 0: no limit. docs/DESIGN.md derives the defaults
	// from the bench.
	RateLimit float64 `env:"KV_RATE_LIMIT" envDefault:"1000"`
	// RateBurst is the requests one client may send at once after a pause.
	RateBurst int `env:"KV_RATE_BURST" envDefault:"2000"`
	// RateClients bounds the clients whose rate is tracked; past it the
	// one seen least recently is forgotten (and starts again with a full
	// burst).
	RateClients int `env:"KV_RATE_CLIENTS" envDefault:"10000"`
}

// DefaultConfig() is Config with its documented defaults: the envDefault
// tags above.
func DefaultConfig() Config { return envdefault.Of[Config]() }

type api struct {
	svc     Service
	tokens  Tokens
	auth    *auth.Authenticator
	ready   Readiness // nil: always ready
	cfg     Config
	limits  *clientLimits // nil: no per-client rate limit
	log     zerolog.Logger
	metrics *metrics.HTTP // nil: not measured
}

// NewHandler returns the API's routes wrapped in their middleware,
// outermost first: the server span and the traceparent answered, request
// id and access log (KV_ACCESS_LOG), metrics, panic recovery; then, on the
// data routes alone, authentication by authn and the per-client rate
// limit (/healthz and /readyz stay open). tokens renders versions for clients; /readyz renders ready's
// report; m may be nil.
func NewHandler(svc Service, tokens Tokens, authn *auth.Authenticator, ready Readiness, cfg Config, log zerolog.Logger, m *metrics.HTTP) http.Handler {
	a := &api{svc: svc, tokens: tokens, auth: authn, ready: ready, cfg: cfg, limits: newClientLimits(cfg), log: log, metrics: m}
	r := a.router()
	r.Group(func(r chi.Router) {
		r.Use(a.authenticate, a.limitClient)
		read(r, "/api", a.getKey)
		r.Put("/api", a.putKey)
		r.Delete("/api", a.deleteKey)
		read(r, "/api/all", a.listKeys)
	})
	return r
}

// read serves a read route for GET and HEAD (which nginx routes as a read
// too): a HEAD gets the GET's status and headers, and net/http drops the body.
func read(r chi.Router, pattern string, h http.HandlerFunc) {
	r.Get(pattern, h)
	r.Head(pattern, h)
}

// NewHealthHandler serves only /healthz and /readyz, for a process that has
// no API (the consumer).
func NewHealthHandler(ready Readiness, log zerolog.Logger) http.Handler {
	a := &api{ready: ready, cfg: Config{AccessLog: true}, log: log}
	return a.router()
}

func (a *api) router() chi.Router {
	r := chi.NewRouter()
	r.Use(a.traced, requestID)
	if a.cfg.AccessLog {
		r.Use(a.accessLog)
	}
	r.Use(a.measure, a.recoverPanic)
	r.NotFound(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, r, http.StatusNotFound, "not_found", "no such route")
	})
	r.MethodNotAllowed(func(w http.ResponseWriter, req *http.Request) {
		w.Header().Set("Allow", allowed(r, req.URL.Path))
		writeError(w, req, http.StatusMethodNotAllowed, "method_not_allowed", req.Method+" is not allowed here")
	})
	read(r, "/healthz", a.healthz)
	read(r, "/readyz", a.readyz)
	return r
}

// allowed is the Allow header of a 405 (RFC 9110 requires one): the methods
// routes serves on path. It asks the router itself, so that routes added
// after router() are counted too.
func allowed(routes chi.Routes, path string) string {
	var methods []string
	for _, m := range []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut,
		http.MethodPatch, http.MethodDelete, http.MethodOptions} {
		if routes.Match(chi.NewRouteContext(), m, path) {
			methods = append(methods, m)
		}
	}
	return strings.Join(methods, ", ")
}
