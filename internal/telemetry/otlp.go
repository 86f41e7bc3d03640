package telemetry

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/encoding/protowire"
)

// OTLPExporter sends spans to an OTLP/HTTP endpoint as protobuf, encoded
// straight from the SDK's spans into the wire format.
//
// It replaces otlptracehttp where the configuration is the common one
// (newExporter falls back to it for the rest): that exporter first copies
// every span into the generated protobuf structs (an allocation per span,
// attribute, value, event and link) and then marshals them, about half of a
// traced request's tracing cost in the API and more in the consumer
// (lab/bench/NOTES.md). What reaches the collector is the same request, message
// for message (otlp_test.go decodes both and compares).
type OTLPExporter struct {
	url     string
	header  http.Header
	timeout time.Duration
	client  *http.Client

	mu  sync.Mutex // one export at a time (the batch span processor's way)
	enc encoder
}

// otlpFromEnv reads the endpoint, headers and timeout as otlptracehttp
// does: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT (the whole URL), else
// OTEL_EXPORTER_OTLP_ENDPOINT + /v1/traces, else http://localhost:4318;
// OTEL_EXPORTER_OTLP[_TRACES]_HEADERS (k=v,… URL-encoded) and _TIMEOUT
// (ms, 10 s). ok is false when the environment asks for something it does
// not do (certificates, compression): the caller then uses otlptracehttp.
func otlpFromEnv() (e *OTLPExporter, ok bool, err error) {
	for _, v := range []string{"CERTIFICATE", "CLIENT_CERTIFICATE", "CLIENT_KEY", "COMPRESSION"} {
		if os.Getenv("OTEL_EXPORTER_OTLP_"+v) != "" || os.Getenv("OTEL_EXPORTER_OTLP_TRACES_"+v) != "" {
			return nil, false, nil
		}
	}
	u := os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
	if u == "" {
		base := os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT")
		if base == "" {
			base = "http://localhost:4318"
		}
		u = strings.TrimSuffix(base, "/") + "/v1/traces"
	}
	if p, err := url.Parse(u); err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
		return nil, false, fmt.Errorf("OTLP endpoint %q: want an http(s) URL", u)
	}
	header := http.Header{}
	for _, name := range []string{"OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_TRACES_HEADERS"} {
		for kv := range strings.SplitSeq(os.Getenv(name), ",") {
			k, v, found := strings.Cut(kv, "=")
			if !found {
				continue
			}
			k, err1 := url.PathUnescape(strings.TrimSpace(k))
			v, err2 := url.PathUnescape(strings.TrimSpace(v))
			if err1 != nil || err2 != nil || k == "" {
				return nil, false, fmt.Errorf("%s: %q is not key=value", name, kv)
			}
			header.Set(k, v)
		}
	}
	timeout := 10 * time.Second
	for _, name := range []string{"OTEL_EXPORTER_OTLP_TIMEOUT", "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT"} {
		if s := os.Getenv(name); s != "" {
			ms, err := strconv.Atoi(s)
			if err != nil || ms <= 0 {
				return nil, false, fmt.Errorf("%s=%q: want milliseconds", name, s)
			}
			timeout = time.Duration(ms) * time.Millisecond
		}
	}
	return NewOTLPExporter(u, header, timeout), true, nil
}

// NewOTLPExporter sends to url (the whole path, …/v1/traces) with header
// on every request; timeout bounds one export, retries included.
func NewOTLPExporter(url string, header http.Header, timeout time.Duration) *OTLPExporter {
	h := http.Header{}
	for k, v := range header {
		h[k] = v
	}
	h.Set("Content-Type", "application/x-protobuf")
	return &OTLPExporter{url: url, header: h, timeout: timeout, client: &http.Client{
		Transport: &http.Transport{Proxy: http.ProxyFromEnvironment, MaxIdleConnsPerHost: 2, IdleConnTimeout: 90 * time.Second},
	}}
}

var _ sdktrace.SpanExporter = (*OTLPExporter)(nil)

// ExportSpans encodes spans and posts them, retrying a failed connection,
// a 429 or a 502–504 with backoff within the timeout.
func (e *OTLPExporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	if len(spans) == 0 {
		return nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	body := e.enc.request(spans)
	ctx, cancel := context.WithTimeout(ctx, e.timeout)
	defer cancel()
	wait := 100 * time.Millisecond
	for {
		retry, err := e.post(ctx, body)
		if err == nil || !retry {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (%w)", err, ctx.Err())
		case <-time.After(wait):
		}
		wait = min(2*wait, 2*time.Second)
	}
}

// post sends one request; retry tells whether it may succeed later.
func (e *OTLPExporter) post(ctx context.Context, body []byte) (retry bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.url, bytes.NewReader(body))
	if err != nil {
		return false, err
	}
	req.Header = e.header
	resp, err := e.client.Do(req)
	if err != nil {
		return ctx.Err() == nil, fmt.Errorf("otlp export: %w", err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK, http.StatusAccepted, http.StatusNoContent:
		return false, nil
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true, fmt.Errorf("otlp export: %s", resp.Status)
	}
	return false, fmt.Errorf("otlp export: %s", resp.Status)
}

// Shutdown closes the idle connections; the batch span processor has
// exported what it held before it calls it.
func (e *OTLPExporter) Shutdown(context.Context) error {
	e.client.CloseIdleConnections()
	return nil
}

// encoder lays out an ExportTraceServiceRequest (opentelemetry-proto v1),
// reusing its buffers from one export to the next.
type encoder struct {
	out, span, item, sub []byte
	groups               []scopeGroup
}

// scopeGroup is the spans of one resource and instrumentation scope, in
// the order first met, as otlptracehttp groups them.
type scopeGroup struct {
	res   *resource.Resource
	scope instrumentation.Scope
	spans []byte // encoded Span messages, each as field 2 of ScopeSpans
	done  bool   // written with an earlier group of its resource
}

// Field numbers of opentelemetry-proto's messages used below.
const (
	reqResourceSpans = 1 // ExportTraceServiceRequest

	rsResource, rsScopeSpans, rsSchemaURL = 1, 2, 3 // ResourceSpans
	resAttributes                         = 1       // Resource
	ssScope, ssSpans, ssSchemaURL         = 1, 2, 3 // ScopeSpans
	scName, scVersion, scAttributes       = 1, 2, 3 // InstrumentationScope

	spTraceID, spSpanID, spTraceState, spParentSpanID = 1, 2, 3, 4 // Span
	spName, spKind, spStart, spEnd                    = 5, 6, 7, 8
	spAttributes, spDroppedAttributes                 = 9, 10
	spEvents, spDroppedEvents                         = 11, 12
	spLinks, spDroppedLinks                           = 13, 14
	spStatus, spFlags                                 = 15, 16

	evTime, evName, evAttributes, evDropped           = 1, 2, 3, 4    // Span.Event
	lkTraceID, lkSpanID, lkAttributes, lkDropped, lkF = 1, 2, 4, 5, 6 // Span.Link
	stMessage, stCode                                 = 2, 3          // Status

	kvKey, kvValue                                                = 1, 2                // KeyValue
	avString, avBool, avInt, avDouble, avArray, avKVList, avBytes = 1, 2, 3, 4, 5, 6, 7 // AnyValue
	arrValues, kvlValues                                          = 1, 1                // ArrayValue, KeyValueList

	flagHasIsRemote, flagIsRemote = 0x100, 0x200 // SpanFlags
)

func (enc *encoder) request(spans []sdktrace.ReadOnlySpan) []byte {
	enc.groups = enc.groups[:0]
	for _, s := range spans {
		if s == nil {
			continue
		}
		g := enc.group(s.Resource(), s.InstrumentationScope())
		enc.span = enc.appendSpan(enc.span[:0], s)
		g.spans = appendMessage(g.spans, ssSpans, enc.span)
	}
	enc.out = enc.out[:0]
	for i := range enc.groups {
		if enc.groups[i].done {
			continue
		}
		enc.item = enc.appendResourceSpans(enc.item[:0], i)
		enc.out = appendMessage(enc.out, reqResourceSpans, enc.item)
	}
	return enc.out
}

// group is the group of spans of res and scope, made when first met.
func (enc *encoder) group(res *resource.Resource, scope instrumentation.Scope) *scopeGroup {
	for i := range enc.groups {
		g := &enc.groups[i]
		if g.scope == scope && sameResource(g.res, res) {
			return g
		}
	}
	if len(enc.groups) < cap(enc.groups) {
		enc.groups = enc.groups[:len(enc.groups)+1]
		g := &enc.groups[len(enc.groups)-1]
		g.res, g.scope, g.spans, g.done = res, scope, g.spans[:0], false
		return g
	}
	enc.groups = append(enc.groups, scopeGroup{res: res, scope: scope})
	return &enc.groups[len(enc.groups)-1]
}

// appendResourceSpans appends the ResourceSpans of group i's resource:
// every later group of the same resource joins it (and is marked done).
func (enc *encoder) appendResourceSpans(b []byte, i int) []byte {
	res := enc.groups[i].res
	if res != nil {
		var r []byte
		for _, kv := range res.Attributes() {
			r = appendKeyValue(r, resAttributes, kv)
		}
		b = appendMessage(b, rsResource, r)
	}
	for j := i; j < len(enc.groups); j++ {
		g := &enc.groups[j]
		if g.done || !sameResource(g.res, res) {
			continue
		}
		var ss []byte
		if g.scope != (instrumentation.Scope{}) {
			ss = appendMessage(ss, ssScope, appendScope(nil, g.scope))
		}
		ss = append(ss, g.spans...)
		ss = appendString(ss, ssSchemaURL, g.scope.SchemaURL)
		b = appendMessage(b, rsScopeSpans, ss)
		g.done = true
	}
	return appendString(b, rsSchemaURL, res.SchemaURL())
}

// sameResource groups spans as otlptracehttp does, by the resources'
// attributes.
func sameResource(a, b *resource.Resource) bool {
	return a == b || a.Equivalent() == b.Equivalent()
}

func appendScope(b []byte, s instrumentation.Scope) []byte {
	b = appendString(b, scName, s.Name)
	b = appendString(b, scVersion, s.Version)
	for _, kv := range s.Attributes.ToSlice() {
		b = appendKeyValue(b, scAttributes, kv)
	}
	return b
}

func (enc *encoder) appendSpan(b []byte, s sdktrace.ReadOnlySpan) []byte {
	sc := s.SpanContext()
	tid, sid := sc.TraceID(), sc.SpanID()
	b = appendBytes(b, spTraceID, tid[:])
	b = appendBytes(b, spSpanID, sid[:])
	b = appendString(b, spTraceState, sc.TraceState().String())
	parent := s.Parent()
	if psid := parent.SpanID(); psid.IsValid() {
		b = appendBytes(b, spParentSpanID, psid[:])
	}
	b = appendString(b, spName, s.Name())
	b = appendVarint(b, spKind, uint64(spanKind(s.SpanKind())))
	b = appendFixed64(b, spStart, unixNano(s.StartTime()))
	b = appendFixed64(b, spEnd, unixNano(s.EndTime()))
	for _, kv := range s.Attributes() {
		b = appendKeyValue(b, spAttributes, kv)
	}
	b = appendVarint(b, spDroppedAttributes, clamp(s.DroppedAttributes()))
	for _, ev := range s.Events() {
		enc.sub = appendEvent(enc.sub[:0], ev)
		b = appendMessage(b, spEvents, enc.sub)
	}
	b = appendVarint(b, spDroppedEvents, clamp(s.DroppedEvents()))
	for _, l := range s.Links() {
		enc.sub = appendLink(enc.sub[:0], l)
		b = appendMessage(b, spLinks, enc.sub)
	}
	b = appendVarint(b, spDroppedLinks, clamp(s.DroppedLinks()))
	// The status is always present, as otlptracehttp sends it.
	st := s.Status()
	code := uint64(statusCode(st.Code))
	size := sizeString(stMessage, st.Description)
	if code != 0 {
		size += 2
	}
	b = protowire.AppendTag(b, spStatus, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(size))
	b = appendString(b, stMessage, st.Description)
	b = appendVarint(b, stCode, code)
	return appendFixed32(b, spFlags, spanFlags(sc.TraceFlags(), parent))
}

func appendEvent(b []byte, ev sdktrace.Event) []byte {
	b = appendFixed64(b, evTime, unixNano(ev.Time))
	b = appendString(b, evName, ev.Name)
	for _, kv := range ev.Attributes {
		b = appendKeyValue(b, evAttributes, kv)
	}
	return appendVarint(b, evDropped, clamp(ev.DroppedAttributeCount))
}

func appendLink(b []byte, l sdktrace.Link) []byte {
	tid, sid := l.SpanContext.TraceID(), l.SpanContext.SpanID()
	b = appendBytes(b, lkTraceID, tid[:])
	b = appendBytes(b, lkSpanID, sid[:])
	for _, kv := range l.Attributes {
		b = appendKeyValue(b, lkAttributes, kv)
	}
	b = appendVarint(b, lkDropped, clamp(l.DroppedAttributeCount))
	return appendFixed32(b, lkF, spanFlags(l.SpanContext.TraceFlags(), l.SpanContext))
}

// spanFlags are the W3C flags and "whether the parent is remote is known",
// and whether it is.
func spanFlags(tf trace.TraceFlags, parent trace.SpanContext) uint32 {
	f := uint32(tf) | flagHasIsRemote
	if parent.IsRemote() {
		f |= flagIsRemote
	}
	return f
}

// spanKind is the SpanKind's number in the protocol (UNSPECIFIED = 0,
// INTERNAL … CONSUMER = 1 … 5, in the API's order).
func spanKind(k trace.SpanKind) int {
	if k < trace.SpanKindInternal || k > trace.SpanKindConsumer {
		return 0
	}
	return int(k)
}

// statusCode is UNSET 0, OK 1, ERROR 2 (the SDK numbers Error 1, Ok 2).
func statusCode(c codes.Code) int {
	switch c {
	case codes.Ok:
		return 1
	case codes.Error:
		return 2
	}
	return 0
}

func unixNano(t time.Time) uint64 { return uint64(max(0, t.UnixNano())) }

func clamp(n int) uint64 { return uint64(min(max(n, 0), math.MaxUint32)) }

// appendKeyValue appends kv as a KeyValue message in field num.
func appendKeyValue(b []byte, num protowire.Number, kv attribute.KeyValue) []byte {
	key := string(kv.Key)
	size := sizeString(kvKey, key) + sizeMessage(sizeAnyValue(kv.Value))
	b = protowire.AppendTag(b, num, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(size))
	b = appendString(b, kvKey, key)
	b = protowire.AppendTag(b, kvValue, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(sizeAnyValue(kv.Value)))
	return appendAnyValue(b, kv.Value)
}

func sizeKeyValue(kv attribute.KeyValue) int {
	return sizeString(kvKey, string(kv.Key)) + sizeMessage(sizeAnyValue(kv.Value))
}

// appendAnyValue appends v's AnyValue message body, as otlptracehttp
// converts attribute values.
func appendAnyValue(b []byte, v attribute.Value) []byte {
	switch v.Type() {
	case attribute.BOOL:
		return appendBoolAlways(b, avBool, v.AsBool())
	case attribute.INT64:
		return appendVarintAlways(b, avInt, uint64(v.AsInt64()))
	case attribute.FLOAT64:
		b = protowire.AppendTag(b, avDouble, protowire.Fixed64Type)
		return protowire.AppendFixed64(b, math.Float64bits(v.AsFloat64()))
	case attribute.STRING:
		return appendStringAlways(b, avString, v.AsString())
	case attribute.BYTESLICE:
		return appendStringAlways(b, avBytes, string(v.AsByteSlice()))
	case attribute.EMPTY:
		return b
	case attribute.BOOLSLICE, attribute.INT64SLICE, attribute.FLOAT64SLICE, attribute.STRINGSLICE, attribute.SLICE:
		elems := sliceValues(v)
		size := 0
		for _, e := range elems {
			size += sizeMessage(sizeAnyValue(e))
		}
		b = protowire.AppendTag(b, avArray, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(size))
		for _, e := range elems {
			b = protowire.AppendTag(b, arrValues, protowire.BytesType)
			b = protowire.AppendVarint(b, uint64(sizeAnyValue(e)))
			b = appendAnyValue(b, e)
		}
		return b
	case attribute.MAP:
		kvs := v.AsMap()
		size := 0
		for _, kv := range kvs {
			size += sizeMessage(sizeKeyValue(kv))
		}
		b = protowire.AppendTag(b, avKVList, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(size))
		for _, kv := range kvs {
			b = appendKeyValue(b, kvlValues, kv)
		}
		return b
	}
	return appendStringAlways(b, avString, "INVALID")
}

func sizeAnyValue(v attribute.Value) int {
	switch v.Type() {
	case attribute.BOOL:
		return 2
	case attribute.INT64:
		return 1 + protowire.SizeVarint(uint64(v.AsInt64()))
	case attribute.FLOAT64:
		return 9
	case attribute.STRING:
		return sizeMessage(len(v.AsString()))
	case attribute.BYTESLICE:
		return sizeMessage(len(v.AsByteSlice()))
	case attribute.EMPTY:
		return 0
	case attribute.BOOLSLICE, attribute.INT64SLICE, attribute.FLOAT64SLICE, attribute.STRINGSLICE, attribute.SLICE:
		size := 0
		for _, e := range sliceValues(v) {
			size += sizeMessage(sizeAnyValue(e))
		}
		return sizeMessage(size)
	case attribute.MAP:
		size := 0
		for _, kv := range v.AsMap() {
			size += sizeMessage(sizeKeyValue(kv))
		}
		return sizeMessage(size)
	}
	return sizeMessage(len("INVALID"))
}

// sliceValues are a slice value's elements as values.
func sliceValues(v attribute.Value) []attribute.Value {
	var out []attribute.Value
	switch v.Type() {
	case attribute.BOOLSLICE:
		for _, x := range v.AsBoolSlice() {
			out = append(out, attribute.BoolValue(x))
		}
	case attribute.INT64SLICE:
		for _, x := range v.AsInt64Slice() {
			out = append(out, attribute.Int64Value(x))
		}
	case attribute.FLOAT64SLICE:
		for _, x := range v.AsFloat64Slice() {
			out = append(out, attribute.Float64Value(x))
		}
	case attribute.STRINGSLICE:
		for _, x := range v.AsStringSlice() {
			out = append(out, attribute.StringValue(x))
		}
	case attribute.SLICE:
		out = v.AsSlice()
	}
	return out
}

// sizeMessage is the size of a length-delimited field of n bytes with a
// one-byte tag (every field number here is below 16).
func sizeMessage(n int) int { return 1 + protowire.SizeVarint(uint64(n)) + n }

func sizeString(_ protowire.Number, s string) int {
	if s == "" {
		return 0
	}
	return sizeMessage(len(s))
}

func appendMessage(b []byte, num protowire.Number, msg []byte) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, msg)
}

// appendString omits an empty string, as proto3 does.
func appendString(b []byte, num protowire.Number, s string) []byte {
	if s == "" {
		return b
	}
	return appendStringAlways(b, num, s)
}

// appendStringAlways writes s even when empty: a oneof member is present
// whatever its value.
func appendStringAlways(b []byte, num protowire.Number, s string) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}

func appendBytes(b []byte, num protowire.Number, p []byte) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, p)
}

func appendVarint(b []byte, num protowire.Number, v uint64) []byte {
	if v == 0 {
		return b
	}
	return appendVarintAlways(b, num, v)
}

func appendVarintAlways(b []byte, num protowire.Number, v uint64) []byte {
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

func appendBoolAlways(b []byte, num protowire.Number, v bool) []byte {
	return appendVarintAlways(b, num, protowire.EncodeBool(v))
}

func appendFixed64(b []byte, num protowire.Number, v uint64) []byte {
	if v == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.Fixed64Type)
	return protowire.AppendFixed64(b, v)
}

func appendFixed32(b []byte, num protowire.Number, v uint32) []byte {
	if v == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.Fixed32Type)
	return protowire.AppendFixed32(b, v)
}
