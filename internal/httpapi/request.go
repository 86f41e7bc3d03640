package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
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
func decodeWrite(body []byte) (writeRequest, error) {
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
