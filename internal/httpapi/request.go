package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/kvstack/kvstack/internal/kv"
)

// errTooLarge marks a body over the limit (413).
var errTooLarge = errors.New("request body too large")

// badRequest is a malformed request, reported to the client as given.
type badRequest struct{ code, msg string }

func (e *badRequest) Error() string { return e.msg }

func malformed(format string, args ...any) error {
	return &badRequest{code: "invalid_json", msg: fmt.Sprintf(format, args...)}
}

// readBody reads at most limit bytes of the body and checks that it is text.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	if r.ContentLength > limit {
		return nil, errTooLarge
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, errTooLarge
		}
		return nil, &badRequest{code: "bad_body", msg: "could not read the request body"}
	}
	if !utf8.Valid(body) {
		return nil, &badRequest{code: "invalid_json", msg: "body is not valid UTF-8"}
	}
	return body, nil
}

// writeRequest is the body of PUT /api and, optionally, DELETE /api.
type writeRequest struct {
	Key   *string
	Value *string
}

// decodeWrite parses body strictly: one JSON object whose only fields are
// "key" and "value" (exactly so spelled, each at most once), strings or
// null, nothing after it, and no escaped lone surrogate (encoding/json would
// quietly turn one into U+FFFD, storing text the client never sent).
// A null field counts as missing.
//
// body must be valid UTF-8 (readBody checks it).
func decodeWrite(body []byte) (writeRequest, error) {
	if req, ok := decodePlainWrite(body); ok {
		return req, nil
	}
	return decodeWriteTokens(body)
}

// decodeWriteTokens is decodeWrite with encoding/json's tokenizer, for
// any body.
func decodeWriteTokens(body []byte) (writeRequest, error) {
	var req writeRequest
	if err := checkSurrogates(body); err != nil {
		return req, err
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	tok, err := dec.Token()
	switch {
	case errors.Is(err, io.EOF):
		return req, malformed("body is empty; want a JSON object")
	case err != nil || tok != json.Delim('{'):
		return req, malformed("body is not a JSON object")
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return req, malformed("body is not a valid JSON object: %v", err)
		}
		name, _ := tok.(string)
		dst := map[string]**string{"key": &req.Key, "value": &req.Value}[name]
		switch {
		case dst == nil:
			return req, malformed("unknown field %q; want only \"key\" and \"value\"", name)
		case seen[name]:
			return req, malformed("field %q given more than once", name)
		}
		seen[name] = true
		if tok, err = dec.Token(); err != nil {
			return req, malformed("body is not a valid JSON object: %v", err)
		}
		switch v := tok.(type) {
		case string:
			*dst = &v
		case nil:
		default:
			return req, malformed("field %q must be a string", name)
		}
	}
	if tok, err := dec.Token(); err != nil || tok != json.Delim('}') {
		return req, malformed("body is not a valid JSON object")
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return req, malformed("unexpected data after the JSON object")
	}
	if req.Key == nil {
		return req, &kv.ValidationError{Field: "key", Reason: "missing"}
	}
	return req, nil
}

// decodePlainWrite is decodeWrite for the body nearly every client sends,
// without encoding/json's tokenizer (its Token allocates per token, and
// was most of a PUT's body parsing): an object of "key" and "value", in
// either order, each a string without escapes or null, JSON whitespace
// around the tokens, the key not null. ok is false for anything else, and
// decodeWrite then reads the body with decodeWriteTokens, as it always
// did; this never accepts what that refuses nor reads a body otherwise
// (TestDecodePlainWriteAgreesWithTheDecoder). body is valid UTF-8.
func decodePlainWrite(body []byte) (req writeRequest, ok bool) {
	i := skipJSONSpace(body, 0)
	if i == len(body) || body[i] != '{' {
		return req, false
	}
	i = skipJSONSpace(body, i+1)
	var seenKey, seenValue bool
	for {
		name, j, ok := plainJSONString(body, i)
		if !ok {
			return req, false
		}
		var dst **string
		switch {
		case name == "key" && !seenKey:
			seenKey, dst = true, &req.Key
		case name == "value" && !seenValue:
			seenValue, dst = true, &req.Value
		default:
			return req, false
		}
		i = skipJSONSpace(body, j)
		if i == len(body) || body[i] != ':' {
			return req, false
		}
		i = skipJSONSpace(body, i+1)
		if bytes.HasPrefix(body[i:], []byte("null")) {
			i += len("null")
		} else {
			v, j, ok := plainJSONString(body, i)
			if !ok {
				return req, false
			}
			*dst, i = &v, j
		}
		i = skipJSONSpace(body, i)
		if i == len(body) {
			return req, false
		}
		if body[i] == '}' {
			break
		}
		if body[i] != ',' {
			return req, false
		}
		i = skipJSONSpace(body, i+1)
	}
	if skipJSONSpace(body, i+1) != len(body) || req.Key == nil {
		return writeRequest{}, false
	}
	return req, true
}

// skipJSONSpace is the index of the first byte of body from i that is not
// JSON whitespace.
func skipJSONSpace(body []byte, i int) int {
	for i < len(body) {
		switch body[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// plainJSONString reads the JSON string at body[i] when it has no escape
// (nor a control character, which JSON forbids raw), and the index after
// its closing quote.
func plainJSONString(body []byte, i int) (string, int, bool) {
	if i == len(body) || body[i] != '"' {
		return "", i, false
	}
	for j := i + 1; j < len(body); j++ {
		switch c := body[j]; {
		case c == '"':
			return string(body[i+1 : j]), j + 1, true
		case c == '\\' || c < 0x20:
			return "", i, false
		}
	}
	return "", i, false
}

// checkSurrogates rejects a \u escape of a UTF-16 surrogate that is not half
// of a high-low pair. Backslashes appear only inside strings in JSON, so a
// scan of the raw bytes sees every escape; what is not JSON at all is left to
// the decoder.
func checkSurrogates(body []byte) error {
	for i := 0; i < len(body); i++ {
		if body[i] != '\\' {
			continue
		}
		if i+1 < len(body) && body[i+1] != 'u' {
			i++ // a two-byte escape: \\, \", \n, …
			continue
		}
		r, ok := hexRune(body, i+2)
		switch {
		case !ok:
		case utf16.IsSurrogate(r) && r < 0xDC00: // high: a low must follow
			if low, ok := hexRune(body, i+8); i+7 < len(body) && body[i+6] == '\\' && body[i+7] == 'u' && ok && low >= 0xDC00 && low <= 0xDFFF {
				i += 11
				continue
			}
			return &badRequest{code: "invalid_json", msg: "body has a lone UTF-16 surrogate escape; not valid text"}
		case utf16.IsSurrogate(r): // a low without its high
			return &badRequest{code: "invalid_json", msg: "body has a lone UTF-16 surrogate escape; not valid text"}
		}
		i++
	}
	return nil
}

// hexRune reads the four hex digits at b[i:i+4].
func hexRune(b []byte, i int) (rune, bool) {
	if i+4 > len(b) {
		return 0, false
	}
	n, err := strconv.ParseUint(string(b[i:i+4]), 16, 32)
	return rune(n), err == nil
}

// queryOf is r's query string, parsed once for the request: the handler
// reads its parameters, and the metrics' route label (metricRoute) whether
// it waits.
func queryOf(r *http.Request) (url.Values, error) {
	e := exchangeOf(r.Context())
	if e == nil {
		return parseQuery(r.URL.RawQuery)
	}
	if !e.parsed {
		e.query, e.queryErr = parseQuery(r.URL.RawQuery)
		e.parsed = true
	}
	return e.query, e.queryErr
}

func parseQuery(raw string) (url.Values, error) {
	q, err := url.ParseQuery(raw)
	if err != nil {
		return q, &badRequest{code: "invalid_query", msg: "query string is malformed"}
	}
	return q, nil
}

// The query parameters of reading one's writes.
const (
	paramMinVersion = "min_version"
	paramWait       = "wait"
	paramTimeout    = "timeout"
	waitApplied     = "applied"
)

// single returns the one value of a query parameter; ok is false when it
// is absent, and a parameter given twice is a 400.
func single(q url.Values, name string) (v string, ok bool, err error) {
	vs, ok := q[name]
	switch {
	case !ok:
		return "", false, nil
	case len(vs) > 1:
		return "", false, &badRequest{code: "invalid_" + name, msg: name + " given more than once"}
	}
	return vs[0], true, nil
}

// waitTimeout reads ?timeout= (a Go duration: 500ms, 2s), allowed only
// beside what waits; nil means the configured default. The service caps
// it at KV_WAIT_MAX.
func waitTimeout(q url.Values, waits bool) (*time.Duration, error) {
	s, ok, err := single(q, paramTimeout)
	if err != nil || !ok {
		return nil, err
	}
	if !waits {
		return nil, &kv.ValidationError{Field: paramTimeout, Reason: "only with min_version (GET) or wait=applied (PUT, DELETE)"}
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return nil, &kv.ValidationError{Field: paramTimeout, Reason: "not a duration such as 500ms or 2s"}
	}
	return &d, nil
}

// minVersion reads ?min_version=, the token of a version of key.
func (a *api) minVersion(q url.Values, key string) (v kv.Version, ok bool, err error) {
	s, ok, err := single(q, paramMinVersion)
	if err != nil || !ok {
		return kv.Version{}, false, err
	}
	v, err = a.tokens.Decode(key, s)
	if err != nil {
		return kv.Version{}, false, &kv.ValidationError{Field: paramMinVersion, Reason: "not a valid version token: " + err.Error()}
	}
	return v, true, nil
}

// waitParams reads what a write says of waiting: whether it waits
// (?wait=applied) and for how long. A read's min_version has no meaning on
// a write.
func waitParams(q url.Values) (waits bool, timeout *time.Duration, err error) {
	if _, ok := q[paramMinVersion]; ok {
		return false, nil, &kv.ValidationError{Field: paramMinVersion, Reason: "only on GET; a write waits with wait=applied"}
	}
	w, waits, err := single(q, paramWait)
	switch {
	case err != nil:
		return false, nil, err
	case waits && w != waitApplied:
		return false, nil, &kv.ValidationError{Field: paramWait, Reason: "the only wait is wait=applied"}
	}
	timeout, err = waitTimeout(q, waits)
	return waits, timeout, err
}
