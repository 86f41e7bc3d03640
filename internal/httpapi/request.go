package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
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
	Key   *string `json:"key"`
	Value *string `json:"value"`
}

// decodeWrite parses body strictly: one JSON object, known fields only,
// strings where strings belong, nothing after it.
func decodeWrite(body []byte) (writeRequest, error) {
	var req writeRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		var typeErr *json.UnmarshalTypeError
		switch {
		case errors.As(err, &typeErr):
			return req, malformed("field %q must be a string", typeErr.Field)
		case errors.Is(err, io.EOF):
			return req, malformed("body is empty; want a JSON object")
		default:
			return req, malformed("body is not a valid JSON object: %v", err)
		}
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return req, malformed("unexpected data after the JSON object")
	}
	if req.Key == nil {
		return req, &kv.ValidationError{Field: "key", Reason: "missing"}
	}
	return req, nil
}

// queryKey returns the single key parameter; ok is false when there is none.
func queryKey(r *http.Request) (key string, ok bool, err error) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return "", false, &badRequest{code: "invalid_query", msg: "query string is malformed"}
	}
	keys, ok := q["key"]
	switch {
	case !ok:
		return "", false, nil
	case len(keys) > 1:
		return "", false, &badRequest{code: "invalid_key", msg: "key given more than once"}
	}
	return keys[0], true, nil
}
