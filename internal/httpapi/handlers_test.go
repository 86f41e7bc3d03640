package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/kvstack/kvstack/internal/kv"
)

// fakeService records what reached it; the tests check that bad input never
// does.
type fakeService struct {
	entries map[string]string
	writes  []kv.Op
	pubErr  error
	listErr error

	// version is every entry's; waits records what reached the waiting
	// calls, which answer waitErr, or (writes) waitStatus and stored.
	version    kv.Version
	waits      []waitCall
	waitErr    error
	waitStatus kv.WriteStatus
	stored     kv.Version
}

type waitCall struct {
	client  string // kv.WriterOf the call's context
	key     string
	min     kv.Version // reads
	timeout time.Duration
}

func (f *fakeService) Limits() kv.Limits { return kv.Limits{MaxKeyBytes: 32, MaxValueBytes: 64} }

// Read, Write and List serve the requests as kv.Service does, on the
// calls below, validating against Limits and bounding waits by the
// default WaitConfig.
func (f *fakeService) Read(ctx context.Context, req kv.ReadRequest) (kv.Read, error) {
	if err := f.Limits().ValidateKey(req.Key); err != nil {
		return kv.Read{}, err
	}
	switch {
	case req.WithWriter:
		return f.GetWritten(ctx, req.Key)
	case req.MinVersion != nil:
		return f.GetAtLeast(ctx, req.Key, *req.MinVersion, kv.DefaultWaitConfig().Bound(req.Timeout))
	}
	return f.Get(ctx, req.Key)
}

func (f *fakeService) Write(ctx context.Context, req kv.WriteRequest) (kv.Write, error) {
	op := kv.Op{Kind: req.Kind, Key: req.Key, Value: req.Value, WrittenBy: kv.WriterOf(ctx)}
	if req.Wait {
		return f.writeApplied(op, kv.DefaultWaitConfig().Bound(req.Timeout))
	}
	op, err := f.write(op)
	if err != nil {
		return kv.Write{}, err
	}
	return kv.Write{Op: op, Status: kv.Pending}, nil
}

func (f *fakeService) GetAtLeast(ctx context.Context, key string, min kv.Version, timeout time.Duration) (kv.Read, error) {
	f.waits = append(f.waits, waitCall{client: kv.WriterOf(ctx), key: key, min: min, timeout: timeout})
	if f.waitErr != nil {
		return kv.Read{}, f.waitErr
	}
	return f.Get(ctx, key)
}

// GetWritten is Get naming the last writer of the key recorded.
func (f *fakeService) GetWritten(ctx context.Context, key string) (kv.Read, error) {
	read, err := f.Get(ctx, key)
	for _, op := range f.writes {
		if op.Key == key {
			read.Entry.WrittenBy = op.WrittenBy
		}
	}
	return read, err
}

func (f *fakeService) writeApplied(op kv.Op, timeout time.Duration) (kv.Write, error) {
	if f.waitErr != nil {
		return kv.Write{}, f.waitErr
	}
	op, err := f.write(op)
	if err != nil {
		return kv.Write{}, err
	}
	f.waits = append(f.waits, waitCall{key: op.Key, timeout: timeout})
	return kv.Write{Op: op, Status: f.waitStatus, Stored: f.stored}, nil
}

func (f *fakeService) Get(_ context.Context, key string) (kv.Read, error) {
	if err := f.Limits().ValidateKey(key); err != nil {
		return kv.Read{}, err
	}
	v, ok := f.entries[key]
	if !ok {
		return kv.Read{}, kv.ErrNotFound
	}
	return kv.Read{Entry: kv.Entry{Key: key, Value: v, Version: f.version}, Source: kv.SourceRedis}, nil
}

func (f *fakeService) List(_ context.Context, req kv.ListRequest) ([]kv.Entry, error) {
	if f.listErr != nil {
		return nil, f.listErr
	}
	if req.After != "" && f.Limits().ValidateKey(req.After) != nil {
		return nil, &kv.ValidationError{Field: "cursor", Reason: "not one this API returned"}
	}
	keys := make([]string, 0, len(f.entries))
	for k := range f.entries {
		if k > req.After && slices.ContainsFunc(req.Prefixes, func(p string) bool { return strings.HasPrefix(k, p) }) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	var out []kv.Entry
	for _, k := range keys[:min(req.Limit, len(keys))] {
		out = append(out, kv.Entry{Key: k, Value: f.entries[k]})
	}
	return out, nil
}

func (f *fakeService) write(op kv.Op) (kv.Op, error) {
	if err := f.Limits().ValidateOp(op); err != nil {
		return kv.Op{}, err
	}
	if f.pubErr != nil {
		return kv.Op{}, f.pubErr
	}
	op.Version = kv.NewVersion(time.Now())
	f.writes = append(f.writes, op)
	return op, nil
}

func newTestHandler(svc Service) http.Handler {
	return newReadyHandler(svc, nil)
}

func newReadyHandler(svc Service, ready Readiness) http.Handler {
	cfg := DefaultConfig()
	cfg.MaxBodyBytes = 256
	cfg.ListPageSize = 2
	return asClient(NewHandler(svc, testTokens, testAuth, ready, cfg, zerolog.Nop(), nil), adminToken)
}

func do(t *testing.T, h http.Handler, method, target, body string) *httptest.ResponseRecorder {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, target, rd)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func decodeJSON(t *testing.T, rec *httptest.ResponseRecorder) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil {
		t.Fatalf("response %q is not JSON: %v", rec.Body.String(), err)
	}
	return m
}

func TestRejectsBadInput(t *testing.T) {
	tests := []struct {
		name, method, target, body string
		want                       int
		code                       string
	}{
		{"get without key", "GET", "/api", "", 400, "invalid_key"},
		{"get empty key", "GET", "/api?key=", "", 400, "invalid_key"},
		{"get key twice", "GET", "/api?key=a&key=b", "", 400, "invalid_key"},
		{"get malformed query", "GET", "/api?key=%zz", "", 400, "invalid_query"},
		{"get control char key", "GET", "/api?key=a%0Ab", "", 400, "invalid_key"},
		{"get too long key", "GET", "/api?key=" + strings.Repeat("k", 33), "", 400, "invalid_key"},
		{"put empty body", "PUT", "/api", "", 400, "invalid_json"},
		{"put not JSON", "PUT", "/api", "key=a&value=b", 400, "invalid_json"},
		{"put truncated", "PUT", "/api", `{"key":"a","value":"b"`, 400, "invalid_json"},
		{"put array", "PUT", "/api", `[{"key":"a","value":"b"}]`, 400, "invalid_json"},
		{"put number key", "PUT", "/api", `{"key":1,"value":"b"}`, 400, "invalid_json"},
		{"put object value", "PUT", "/api", `{"key":"a","value":{"x":1}}`, 400, "invalid_json"},
		{"put null value", "PUT", "/api", `{"key":"a","value":null}`, 400, "invalid_value"},
		{"put missing value", "PUT", "/api", `{"key":"a"}`, 400, "invalid_value"},
		{"put missing key", "PUT", "/api", `{"value":"b"}`, 400, "invalid_key"},
		{"put empty key", "PUT", "/api", `{"key":"","value":"b"}`, 400, "invalid_key"},
		{"put unknown field", "PUT", "/api", `{"key":"a","value":"b","ttl":5}`, 400, "invalid_json"},
		{"put trailing data", "PUT", "/api", `{"key":"a","value":"b"} {"key":"c"}`, 400, "invalid_json"},
		{"put NUL in value", "PUT", "/api", `{"key":"a","value":"\u0000"}`, 400, "invalid_value"},
		{"put invalid UTF-8", "PUT", "/api", "{\"key\":\"a\",\"value\":\"\xff\"}", 400, "invalid_json"},
		{"put value too long", "PUT", "/api", `{"key":"a","value":"` + strings.Repeat("v", 65) + `"}`, 400, "invalid_value"},
		{"put body too large", "PUT", "/api", `{"key":"a","value":"` + strings.Repeat("v", 300) + `"}`, 413, "payload_too_large"},
		{"put deeply nested", "PUT", "/api", strings.Repeat("[", 200), 400, "invalid_json"},
		{"put lone high surrogate", "PUT", "/api", `{"key":"a\ud800b","value":"b"}`, 400, "invalid_json"},
		{"put lone low surrogate", "PUT", "/api", `{"key":"a","value":"\udfff"}`, 400, "invalid_json"},
		{"put reversed surrogates", "PUT", "/api", `{"key":"a","value":"\ude00\ud83d"}`, 400, "invalid_json"},
		{"put field name in capitals", "PUT", "/api", `{"KEY":"a","Value":"b"}`, 400, "invalid_json"},
		{"put key twice", "PUT", "/api", `{"key":"a","key":"b","value":"c"}`, 400, "invalid_json"},
		{"put null key", "PUT", "/api", `{"key":null,"value":"c"}`, 400, "invalid_key"},
		{"put not closed", "PUT", "/api", `{"key":"a","value":"b",`, 400, "invalid_json"},
		{"delete without key", "DELETE", "/api", "", 400, "invalid_key"},
		{"delete with value", "DELETE", "/api", `{"key":"a","value":"b"}`, 400, "invalid_value"},
		{"delete keys disagree", "DELETE", "/api?key=a", `{"key":"b"}`, 400, "invalid_key"},
		{"put keys disagree", "PUT", "/api?key=q", `{"key":"q2","value":"v"}`, 400, "invalid_key"},
		{"put key twice in query", "PUT", "/api?key=a&key=a", `{"key":"a","value":"v"}`, 400, "invalid_key"},
		{"put malformed query", "PUT", "/api?key=%zz", `{"key":"a","value":"v"}`, 400, "invalid_query"},
		{"list bad limit", "GET", "/api/all?limit=0", "", 400, "invalid_limit"},
		{"list huge limit", "GET", "/api/all?limit=1000000", "", 400, "invalid_limit"},
		{"list bad cursor", "GET", "/api/all?limit=1&cursor=***", "", 400, "invalid_cursor"},
		{"odd method", "PATCH", "/api", `{"key":"a"}`, 405, "method_not_allowed"},
		{"unknown route", "GET", "/metrics", "", 404, "not_found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			svc := &fakeService{entries: map[string]string{}}
			rec := do(t, newTestHandler(svc), tt.method, tt.target, tt.body)
			if rec.Code != tt.want {
				t.Fatalf("status = %d, want %d (body %s)", rec.Code, tt.want, rec.Body)
			}
			m := decodeJSON(t, rec)
			if m["error"] != tt.code || m["message"] == "" {
				t.Fatalf("error body = %v, want code %q and a message", m, tt.code)
			}
			if len(svc.writes) != 0 {
				t.Fatalf("bad input reached the queue: %+v", svc.writes)
			}
			if rec.Header().Get("X-Request-Id") == "" {
				t.Fatalf("no X-Request-Id on the response")
			}
		})
	}
}

func TestCRUD(t *testing.T) {
	svc := &fakeService{entries: map[string]string{"a": "1"}}
	h := newTestHandler(svc)

	rec := do(t, h, "GET", "/api?key=a", "")
	if got := decodeJSON(t, rec); rec.Code != 200 || got["value"] != "1" || got["source"] != "redis" || got["key"] != "a" {
		t.Fatalf("GET = %d %v", rec.Code, got)
	}
	if rec := do(t, h, "GET", "/api?key=zz", ""); rec.Code != 404 {
		t.Fatalf("GET absent = %d, want 404", rec.Code)
	}

	// Escapes are text: a surrogate pair is one character, a backslash one.
	rec = do(t, h, "PUT", "/api", `{"key":"e","value":"\ud83d\ude00 \\u0041"}`)
	if got := decodeJSON(t, rec); rec.Code != 202 || svc.writes[0].Value != "😀 \\u0041" {
		t.Fatalf("PUT with escapes = %d %v, stored %q", rec.Code, got, svc.writes[0].Value)
	}
	svc.writes = nil

	rec = do(t, h, "PUT", "/api", `{"key":"b","value":"2"}`)
	got := decodeJSON(t, rec)
	if rec.Code != 202 || got["status"] != "accepted" || got["op"] != "put" || got["key"] != "b" || got["op_id"] == "" {
		t.Fatalf("PUT = %d %v", rec.Code, got)
	}
	if ts, _ := got["timestamp"].(string); len(ts) != len("2026-01-02T03:04:05.000006Z") {
		t.Fatalf("timestamp %q is not RFC 3339 with microseconds", got["timestamp"])
	}
	// A ?key= that names the body's key is accepted, as for DELETE.
	rec = do(t, h, "PUT", "/api?key=b", `{"key":"b","value":"2"}`)
	if got := decodeJSON(t, rec); rec.Code != 202 || got["key"] != "b" {
		t.Fatalf("PUT with agreeing ?key= = %d %v", rec.Code, got)
	}
	svc.writes = svc.writes[:1]
	for _, tc := range []struct{ target, body string }{{"/api?key=b", ""}, {"/api", `{"key":"b"}`}, {"/api?key=b", `{"key":"b"}`}} {
		rec = do(t, h, "DELETE", tc.target, tc.body)
		if got := decodeJSON(t, rec); rec.Code != 202 || got["op"] != "delete" || got["key"] != "b" {
			t.Fatalf("DELETE %s %s = %d %v", tc.target, tc.body, rec.Code, got)
		}
	}
	if len(svc.writes) != 4 || svc.writes[0].Value != "2" || svc.writes[3].Kind != kv.KindDelete {
		t.Fatalf("writes = %+v", svc.writes)
	}
}

func TestBrokerDownIs503(t *testing.T) {
	svc := &fakeService{pubErr: fmt.Errorf("publish: %w", kv.ErrUnavailable)}
	rec := do(t, newTestHandler(svc), "PUT", "/api", `{"key":"a","value":"b"}`)
	if rec.Code != 503 || rec.Header().Get("Retry-After") == "" {
		t.Fatalf("status %d, Retry-After %q; want 503 with Retry-After", rec.Code, rec.Header().Get("Retry-After"))
	}
	if m := decodeJSON(t, rec); strings.Contains(m["message"].(string), "publish") {
		t.Fatalf("internal error text leaked: %v", m)
	}
}

func TestListPagesAndStreams(t *testing.T) {
	svc := &fakeService{entries: map[string]string{"a": "1", "b": "2", "c": "3", "d": "4", "e": "5"}}
	h := newTestHandler(svc)

	var keys []string
	target := "/api/all?limit=2"
	for pages := 0; ; pages++ {
		if pages > 5 {
			t.Fatalf("paging does not end")
		}
		rec := do(t, h, "GET", target, "")
		var page struct {
			Items      []listItem `json:"items"`
			NextCursor *string    `json:"next_cursor"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &page); rec.Code != 200 || err != nil {
			t.Fatalf("GET %s = %d %s", target, rec.Code, rec.Body)
		}
		for _, it := range page.Items {
			keys = append(keys, it.Key)
		}
		if page.NextCursor == nil {
			break
		}
		target = "/api/all?limit=2&cursor=" + *page.NextCursor
	}
	want := []string{"a", "b", "c", "d", "e"}
	if !slices.Equal(keys, want) {
		t.Fatalf("paged keys = %v, want %v", keys, want)
	}

	// Streamed in pages of 2 (ListPageSize), ending on a short page.
	rec := do(t, h, "GET", "/api/all", "")
	var all listPage
	if err := json.Unmarshal(rec.Body.Bytes(), &all); rec.Code != 200 || err != nil {
		t.Fatalf("GET /api/all = %d %s (%v)", rec.Code, rec.Body, err)
	}
	if len(all.Items) != 5 || all.Items[4] != (listItem{"e", "5"}) || all.NextCursor != nil {
		t.Fatalf("streamed listing = %+v", all)
	}

	svc.listErr = kv.ErrUnavailable
	if rec := do(t, h, "GET", "/api/all", ""); rec.Code != 503 {
		t.Fatalf("listing with the store down = %d, want 503", rec.Code)
	}
}

func TestRequestID(t *testing.T) {
	h := newTestHandler(&fakeService{})
	for _, tc := range []struct{ given, want string }{{"abc-123", "abc-123"}, {"bad id\nwith newline", ""}} {
		req := httptest.NewRequest("GET", "/healthz", nil)
		req.Header.Set("X-Request-Id", tc.given)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		got := rec.Header().Get("X-Request-Id")
		if tc.want != "" && got != tc.want || tc.want == "" && (got == "" || got == tc.given) {
			t.Errorf("given %q, echoed %q", tc.given, got)
		}
	}
}

type panicService struct{ fakeService }

func (panicService) Read(context.Context, kv.ReadRequest) (kv.Read, error) { panic("boom") }

func TestPanicBecomes500(t *testing.T) {
	rec := do(t, newTestHandler(&panicService{}), "GET", "/api?key=a", "")
	if rec.Code != 500 || decodeJSON(t, rec)["error"] != "internal" {
		t.Fatalf("panic gave %d %s", rec.Code, rec.Body)
	}
}

// FuzzWriteRequest: no body crashes the handler; anything but a 202 leaves
// the queue untouched, and a 202 only ever carries a valid operation.
func FuzzWriteRequest(f *testing.F) {
	for _, s := range []string{`{"key":"a","value":"b"}`, `{"key":"a"}`, `{"key":"\u0000","value":1}`, `[`, `{"key":"a","value":"b"}x`, "{\"key\":\"\xff\"}"} {
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, body string, put bool) {
		svc := &fakeService{entries: map[string]string{}}
		method := "DELETE"
		if put {
			method = "PUT"
		}
		rec := do(t, newTestHandler(svc), method, "/api", body)
		switch {
		case rec.Code == 202:
			if len(svc.writes) != 1 || svc.Limits().ValidateOp(svc.writes[0]) != nil {
				t.Fatalf("202 with writes %+v", svc.writes)
			}
		case rec.Code >= 400 && rec.Code < 500:
			if len(svc.writes) != 0 {
				t.Fatalf("%d but wrote %+v", rec.Code, svc.writes)
			}
		default:
			t.Fatalf("status %d for %q", rec.Code, body)
		}
	})
}

// A streamed listing with nothing to show is still a JSON document: the
// opening was once written with the first page only, and an empty store
// streamed `],"next_cursor":null}`.
func TestEmptyStreamedListingIsJSON(t *testing.T) {
	rec := do(t, newTestHandler(&fakeService{}), "GET", "/api/all", "")
	if rec.Code != 200 || strings.TrimSpace(rec.Body.String()) != `{"items":[],"next_cursor":null}` {
		t.Fatalf("empty listing = %d %q", rec.Code, rec.Body)
	}
}
