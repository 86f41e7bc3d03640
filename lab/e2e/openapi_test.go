//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	"github.com/kvstack/kvstack/api"
)

// contract holds every exchange a harness makes through nginx to
// api/openapi.yaml: an answer to a route the spec has must be one of the
// operation's responses (status, headers, body); a request the spec
// refuses must get a 4xx; an answer off the spec's routes (an unknown path
// or method) must be a 4xx or 5xx in the spec's Error shape. What breaks
// it is reported when the test ends.
type contract struct {
	doc    *openapi3.T
	router routers.Router

	mu         sync.Mutex
	violations []string
}

var (
	specOnce sync.Once
	spec     *openapi3.T
	specErr  error
)

func newContract(t *testing.T) *contract {
	t.Helper()
	specOnce.Do(func() {
		spec, specErr = openapi3.NewLoader().LoadFromData(api.OpenAPI)
		if specErr == nil {
			specErr = spec.Validate(context.Background())
		}
	})
	if specErr != nil {
		t.Fatalf("api/openapi.yaml: %v", specErr)
	}
	router, err := gorillamux.NewRouter(spec)
	if err != nil {
		t.Fatal(err)
	}
	c := &contract{doc: spec, router: router}
	t.Cleanup(func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		for _, v := range c.violations {
			t.Errorf("against api/openapi.yaml: %s", v)
		}
	})
	return c
}

// check holds one exchange to the spec: the request as sent (its body
// apart) and the answer.
func (c *contract) check(req *http.Request, reqBody []byte, r response) {
	if c == nil {
		return
	}
	if err := c.violation(req, reqBody, r); err != nil {
		c.mu.Lock()
		c.violations = append(c.violations, fmt.Sprintf("%s %s → %d %q: %v", req.Method, req.URL.RequestURI(), r.status, truncate(r.body), err))
		c.mu.Unlock()
	}
}

func (c *contract) violation(sent *http.Request, reqBody []byte, r response) error {
	ctx := context.Background()
	req := sent.Clone(ctx)
	req.Body = nil
	if reqBody != nil {
		req.Body, req.ContentLength = readCloser(reqBody), int64(len(reqBody))
		// The API reads a body as JSON whatever its Content-Type says.
		if req.Header.Get("Content-Type") == "" {
			req.Header.Set("Content-Type", "application/json")
		}
	}
	// nginx refuses what it cannot take before any route, in its own HTML:
	// a header or request line too large.
	if nginxRefusal[r.status] && strings.HasPrefix(r.header.Get("Content-Type"), "text/html") {
		return nil
	}
	route, params, err := c.router.FindRoute(req)
	if err != nil {
		if r.status < 400 {
			return fmt.Errorf("no operation in the spec, yet answered %d", r.status)
		}
		// nginx's own answers to what it cannot parse (a 400) are its HTML.
		if req.Method == http.MethodHead || len(r.body) == 0 || r.header.Get("Content-Type") != "application/json" {
			return nil
		}
		var v any
		if err := json.Unmarshal(r.body, &v); err != nil {
			return fmt.Errorf("the body is not JSON: %v", err)
		}
		return c.doc.Components.Schemas["Error"].Value.VisitJSON(v, openapi3.EnableJSONSchema2020())
	}
	opts := &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, IncludeResponseStatus: true}
	in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route, Options: opts}
	if reqErr := openapi3filter.ValidateRequest(ctx, in); reqErr != nil && (r.status < 400 || r.status >= 500) && r.status != http.StatusTooManyRequests {
		return fmt.Errorf("a request the spec refuses (%v) got %d, want a 4xx", reqErr, r.status)
	}
	out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: r.status, Header: r.header, Options: opts}
	out.SetBodyBytes(r.body)
	return openapi3filter.ValidateResponse(ctx, out)
}

// nginxRefusal are the statuses nginx answers in HTML, before routing, to a
// request it cannot take (large_client_header_buffers).
var nginxRefusal = map[int]bool{http.StatusBadRequest: true, http.StatusRequestURITooLong: true}

func truncate(b []byte) string {
	if len(b) > 200 {
		return string(b[:200]) + "…"
	}
	return string(b)
}

func readCloser(b []byte) *nopCloser { return &nopCloser{bytes.NewReader(b)} }

type nopCloser struct{ *bytes.Reader }

func (nopCloser) Close() error { return nil }
