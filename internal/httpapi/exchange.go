package httpapi

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/kvstack/kvstack/internal/auth"
)

// exchange is one request's state, made once by the outermost middleware
// (traced) and shared by the others, so that a request costs one response
// writer wrapper and one copy of the request for all of them: the status
// and bytes answered, the bytes of body read, the request id, the start.
// It is the ResponseWriter the middleware below traced see.
type exchange struct {
	w         http.ResponseWriter
	status    int // the first WriteHeader's, or 200 at the first Write; 0 until then
	bytes     int
	requestID string
	start     time.Time
	span      trace.Span // nil when the request is not traced
	body      countingBody
	// principal is who the request acts for: set by authenticate on the
	// data routes, nil elsewhere.
	principal *auth.Principal
	// query is the query string, parsed at its first use (queryOf).
	query    url.Values
	queryErr error
	parsed   bool
}

type exchangeKey struct{}

// exchangeOf is the request's exchange; nil outside the middleware.
func exchangeOf(ctx context.Context) *exchange {
	e, _ := ctx.Value(exchangeKey{}).(*exchange)
	return e
}

func (e *exchange) Header() http.Header { return e.w.Header() }

func (e *exchange) WriteHeader(code int) {
	if e.status == 0 && code >= 200 {
		e.status = code
	}
	e.w.WriteHeader(code)
}

func (e *exchange) Write(b []byte) (int, error) {
	if e.status == 0 {
		e.status = http.StatusOK
	}
	n, err := e.w.Write(b)
	e.bytes += n
	return n, err
}

// Flush sends what was written so far (GET /api/all streams).
func (e *exchange) Flush() {
	if e.status == 0 {
		e.status = http.StatusOK
	}
	if f, ok := e.w.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (e *exchange) Unwrap() http.ResponseWriter { return e.w }

// answered is the status sent (200 when the handler wrote nothing).
func (e *exchange) answered() int {
	if e.status == 0 {
		return http.StatusOK
	}
	return e.status
}

// countingBody counts the bytes read of a request body.
type countingBody struct {
	io.ReadCloser
	n int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n += int64(n)
	return n, err
}

// contextWith is ctx carrying the exchange.
func contextWith(ctx context.Context, e *exchange) context.Context {
	return context.WithValue(ctx, exchangeKey{}, e)
}
