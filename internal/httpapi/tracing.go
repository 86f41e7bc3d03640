package httpapi

import (
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// tracerName is the instrumentation scope of the server spans.
//
// Spans are made where docs/ARCHITECTURE.md says ("Where spans and metrics
// are made"); here, the server span, where a request enters the API.
const tracerName = "github.com/kvstack/kvstack/internal/httpapi"

// traced is the outermost middleware: it makes the request's exchange and,
// except for the health probes (which would drown the traces that matter),
// starts its SERVER span, continuing the caller's trace when it sent a
// traceparent, and returns the trace's traceparent to the client so that
// it can look the trace up. Once served, the span is named after the route
// template ("PUT /api", never the raw URL).
//
// The span is the one otelhttp (contrib v0.72) made, attribute for
// attribute (tracing_test.go compares the two), for a fraction of the
// cost: one wrapper and one copy of the request shared with the rest of
// the middleware, no metrics recorded into a no-op meter, attributes built
// in place and only for a span that records them (lab/bench/NOTES.md).
func (a *api) traced(next http.Handler) http.Handler {
	tracer := otel.Tracer(tracerName)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e := &exchange{w: w, start: time.Now()}
		ctx := r.Context()
		if p := r.URL.Path; p != "/healthz" && p != "/readyz" {
			ctx = otel.GetTextMapPropagator().Extract(ctx, propagation.HeaderCarrier(r.Header))
			ctx, e.span = tracer.Start(ctx, "http.server", trace.WithSpanKind(trace.SpanKindServer))
			if e.span.IsRecording() { // a span not sampled would drop them
				var attrs [12]attribute.KeyValue
				e.span.SetAttributes(requestAttrs(attrs[:0], r)...)
			}
			otel.GetTextMapPropagator().Inject(ctx, propagation.HeaderCarrier(w.Header()))
		}
		if r.Body != nil && r.Body != http.NoBody {
			e.body.ReadCloser = r.Body
			r.Body = &e.body
		}
		r = r.WithContext(contextWith(ctx, e))
		if e.span == nil {
			next.ServeHTTP(e, r)
			return
		}
		defer e.span.End()
		next.ServeHTTP(e, r)
		e.endSpan(r)
	})
}

// attrEndUser names who a request acted for: its token's subject.
const attrEndUser = attribute.Key("enduser.id")

// endSpan names the span after the route and records the answer.
func (e *exchange) endSpan(r *http.Request) {
	if !e.span.IsRecording() {
		return
	}
	route := routePattern(r)
	e.span.SetName(spanMethod(r.Method) + " " + route)
	status := e.answered()
	var attrs [5]attribute.KeyValue
	out := attrs[:0]
	if e.principal != nil && e.principal.Subject != "" {
		out = append(out, attrEndUser.String(e.principal.Subject))
	}
	if e.body.n > 0 {
		out = append(out, semconv.HTTPRequestBodySize(int(e.body.n)))
	}
	if e.bytes > 0 {
		out = append(out, semconv.HTTPResponseBodySize(e.bytes))
	}
	out = append(out, semconv.HTTPResponseStatusCode(status), semconv.HTTPRoute(route))
	e.span.SetAttributes(out...)
	if status >= 500 {
		e.span.SetStatus(codes.Error, "")
	}
}

// requestAttrs appends the server span's request attributes to attrs, as
// otelhttp's semantic conventions (v1.37 keys) name them.
func requestAttrs(attrs []attribute.KeyValue, r *http.Request) []attribute.KeyValue {
	host, port := splitHostPort(r.Host)
	attrs = append(attrs, semconv.ServerAddress(host), methodAttr(r.Method), semconv.URLScheme(scheme(r)))
	if port > 0 && port != defaultPort(r) {
		attrs = append(attrs, semconv.ServerPort(port))
	}
	if r.Method != "" && !knownMethod(r.Method) {
		attrs = append(attrs, semconv.HTTPRequestMethodOriginal(r.Method))
	}
	peer, peerPort := splitHostPort(r.RemoteAddr)
	if peer != "" {
		attrs = append(attrs, semconv.NetworkPeerAddress(peer))
		if peerPort > 0 {
			attrs = append(attrs, semconv.NetworkPeerPort(peerPort))
		}
	}
	if ua := r.UserAgent(); ua != "" {
		attrs = append(attrs, semconv.UserAgentOriginal(ua))
	}
	// The client is who nginx saw ($remote_addr, which it sends as
	// X-Real-IP over whatever the client sent); X-Forwarded-For, which
	// otelhttp reads, starts with whatever the client wrote there. In
	// Kubernetes the HTTPRoute removes a client's X-Real-IP: the peer.
	client := r.Header.Get("X-Real-IP")
	if client == "" {
		client = peer
	}
	if client != "" {
		attrs = append(attrs, semconv.ClientAddress(client))
	}
	if r.URL != nil && r.URL.Path != "" {
		attrs = append(attrs, semconv.URLPath(r.URL.Path))
	}
	if name, version, _ := strings.Cut(r.Proto, "/"); version != "" {
		if name = strings.ToLower(name); name != "http" && name != "" {
			attrs = append(attrs, semconv.NetworkProtocolName(name))
		}
		attrs = append(attrs, semconv.NetworkProtocolVersion(version))
	}
	return attrs
}

func scheme(r *http.Request) string {
	if r.TLS != nil {
		return "https"
	}
	return "http"
}

func defaultPort(r *http.Request) int {
	if r.TLS != nil {
		return 443
	}
	return 80
}

// knownMethod tells a method of RFC 9110 and 5789, spelt as they are.
func knownMethod(m string) bool {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPut, http.MethodDelete, http.MethodPost,
		http.MethodPatch, http.MethodOptions, http.MethodConnect, http.MethodTrace:
		return true
	}
	return false
}

// methodAttr is http.request.method: the method when it is a known one
// (in any case), else _OTHER; the original, when it differs, is
// http.request.method_original.
func methodAttr(m string) attribute.KeyValue {
	if knownMethod(m) {
		return semconv.HTTPRequestMethodKey.String(m)
	}
	switch strings.ToUpper(m) {
	case http.MethodGet:
		return semconv.HTTPRequestMethodGet
	case http.MethodHead:
		return semconv.HTTPRequestMethodHead
	case http.MethodPut:
		return semconv.HTTPRequestMethodPut
	case http.MethodDelete:
		return semconv.HTTPRequestMethodDelete
	case http.MethodPost:
		return semconv.HTTPRequestMethodPost
	case http.MethodPatch:
		return semconv.HTTPRequestMethodPatch
	case http.MethodOptions:
		return semconv.HTTPRequestMethodOptions
	case http.MethodConnect:
		return semconv.HTTPRequestMethodConnect
	case http.MethodTrace:
		return semconv.HTTPRequestMethodTrace
	}
	return semconv.HTTPRequestMethodOther
}

// splitHostPort splits "host:port", "[v6]:port" or a bare host; port is -1
// when absent or not a port.
func splitHostPort(hostport string) (string, int) {
	if !strings.Contains(hostport, ":") {
		return hostport, -1
	}
	if strings.HasPrefix(hostport, "[") && !strings.Contains(hostport[strings.LastIndexByte(hostport, ']'):], ":") {
		return strings.Trim(hostport, "[]"), -1
	}
	host, p, err := net.SplitHostPort(hostport)
	if err != nil {
		return host, -1
	}
	port, err := strconv.ParseUint(p, 10, 16)
	if err != nil {
		return host, -1
	}
	return host, int(port)
}

// spanMethod keeps a client's made-up method out of span names, as
// methodLabel keeps it out of metric labels: the semantic conventions name
// such a span "HTTP {route}".
func spanMethod(m string) string {
	if methodLabel(m) == "other" {
		return "HTTP"
	}
	return m
}
