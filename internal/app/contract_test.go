package app

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	"github.com/kvstack/kvstack/api"
)

// contract checks real answers of an API against api/openapi.yaml.
type contract struct {
	t      *testing.T
	doc    *openapi3.T
	router routers.Router
	s      *stack
}

func newContract(t *testing.T, s *stack) *contract {
	t.Helper()
	doc, err := openapi3.NewLoader().LoadFromData(api.OpenAPI)
	if err != nil {
		t.Fatalf("load api/openapi.yaml: %v", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("api/openapi.yaml: %v", err)
	}
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	return &contract{t: t, doc: doc, router: router, s: s}
}

// valid sends a request the spec allows, checks it against the spec, and
// checks the answer against the operation's responses.
func (c *contract) valid(method, path, body string) response {
	c.t.Helper()
	return c.exchange(method, path, body, true)
}

// invalid sends a request the spec does not allow (bad input), and checks
// only the answer.
func (c *contract) invalid(method, path, body string) response {
	c.t.Helper()
	return c.exchange(method, path, body, false)
}

func (c *contract) exchange(method, path, body string, validRequest bool) response {
	c.t.Helper()
	ctx := context.Background()
	newReq := func() *http.Request {
		var rd io.Reader
		if body != "" {
			rd = strings.NewReader(body)
		}
		req, err := http.NewRequest(method, c.s.api+path, rd)
		if err != nil {
			c.t.Fatal(err)
		}
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		return req
	}
	req := newReq()
	opts := &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, IncludeResponseStatus: true}
	route, params, routeErr := c.router.FindRoute(req)
	in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route, Options: opts}
	if validRequest {
		if routeErr != nil {
			c.t.Fatalf("%s %s: not in the spec: %v", method, path, routeErr)
		}
		if err := openapi3filter.ValidateRequest(ctx, in); err != nil {
			c.t.Fatalf("%s %s: the request breaks the spec: %v", method, path, err)
		}
	}

	resp, err := c.s.client.Do(newReq())
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	raw, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		c.t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	a := response{status: resp.StatusCode, header: resp.Header}
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &a.body); err != nil {
			c.t.Fatalf("%s %s: %d, body %q is not JSON: %v", method, path, a.status, raw, err)
		}
	}

	if routeErr != nil {
		// No operation: an unknown path's 404 or a method's 405.
		c.checkUnrouted(method, path, a, raw)
		return a
	}
	out := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in, Status: a.status, Header: resp.Header, Options: opts,
	}
	out.SetBodyBytes(raw)
	if err := openapi3filter.ValidateResponse(ctx, out); err != nil {
		c.t.Errorf("%s %s: the answer %d %s breaks the spec: %v", method, path, a.status, raw, err)
	}
	return a
}

func (c *contract) checkUnrouted(method, path string, a response, raw []byte) {
	c.t.Helper()
	var value any
	if err := json.Unmarshal(raw, &value); err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	errSchema := c.doc.Components.Schemas["Error"].Value
	if err := errSchema.VisitJSON(value, openapi3.EnableJSONSchema2020()); err != nil {
		c.t.Errorf("%s %s: %d %s is not the spec's Error: %v", method, path, a.status, raw, err)
	}
	switch a.status {
	case http.StatusMethodNotAllowed:
		if a.header.Get("Allow") == "" {
			c.t.Errorf("%s %s: 405 without the Allow header the spec requires", method, path)
		}
	case http.StatusNotFound:
	default:
		c.t.Errorf("%s %s: %d for a request the spec has no operation for; want 404 or 405", method, path, a.status)
	}
}

func wantStatus(t *testing.T, what string, a response, want int) {
	t.Helper()
	if a.status != want {
		t.Fatalf("%s = %d %v, want %d", what, a.status, a.body, want)
	}
}

// Every route answers as api/openapi.yaml says, on the real services: each
// request a test makes here is checked against the spec, and each answer
// against the operation's responses (status, headers, body schema).
func TestAnswersKeepTheOpenAPIContract(t *testing.T) {
	s := newStack(t)
	s.startAPI()
	_, stopConsumer := s.startConsumer()
	c := newContract(t, s)
	key, other := "contract/a b", "contract/c"
	q := func(k string) string { return "?key=" + url.QueryEscape(k) }

	wantStatus(t, "GET absent", c.valid("GET", "/api"+q(key), ""), 404)
	put := c.valid("PUT", "/api", s.putBody(key, "one"))
	wantStatus(t, "PUT", put, 202)
	tok := tokenOf(t, put)
	wantStatus(t, "GET min_version", c.valid("GET", "/api"+q(key)+"&min_version="+tok+"&timeout=10s", ""), 200)
	wantStatus(t, "GET", c.valid("GET", "/api"+q(key), ""), 200)
	wantStatus(t, "HEAD", c.valid("HEAD", "/api"+q(key), ""), 200)
	wantStatus(t, "PUT wait=applied", c.valid("PUT", "/api?wait=applied&timeout=10s", s.putBody(key, "two")), 200)
	wantStatus(t, "PUT other wait=applied", c.valid("PUT", "/api"+q(other)+"&wait=applied&timeout=10s", s.putBody(other, "three")), 200)

	page := c.valid("GET", "/api/all?limit=1", "")
	wantStatus(t, "list page", page, 200)
	cursor, _ := page.body["next_cursor"].(string)
	if cursor == "" {
		t.Fatalf("a page of 1 of 2 keys has no next_cursor: %v", page.body)
	}
	wantStatus(t, "list next page", c.valid("GET", "/api/all?limit=1&cursor="+cursor, ""), 200)
	wantStatus(t, "list all", c.valid("GET", "/api/all", ""), 200)
	wantStatus(t, "HEAD list", c.valid("HEAD", "/api/all", ""), 200)

	wantStatus(t, "DELETE wait=applied", c.valid("DELETE", "/api"+q(other)+"&wait=applied&timeout=10s", ""), 200)
	wantStatus(t, "GET deleted", c.valid("GET", "/api"+q(other), ""), 404)
	wantStatus(t, "DELETE by body", c.valid("DELETE", "/api", fmt.Sprintf(`{"key":%q}`, key)), 202)
	for _, probe := range []string{"/healthz", "/readyz"} {
		wantStatus(t, "GET "+probe, c.valid("GET", probe, ""), 200)
		wantStatus(t, "HEAD "+probe, c.valid("HEAD", probe, ""), 200)
	}

	// Bad input: the answers keep the contract too.
	for _, tc := range []struct {
		method, path, body string
		want               int
	}{
		{"PUT", "/api", `{"key":`, 400},
		{"PUT", "/api", `{"key":"k","value":"v","extra":1}`, 400},
		{"GET", "/api", "", 400},
		{"GET", "/api" + q(key) + "&wait=applied", "", 400},
		{"GET", "/api" + q(key) + "&min_version=forged", "", 400},
		{"GET", "/api/all?limit=0", "", 400},
		{"GET", "/api/all?cursor=%zz", "", 400},
		{"PUT", "/api", s.putBody(key, strings.Repeat("x", 2<<20)), 413},
		{"PATCH", "/api", "", 405},
		{"POST", "/api/all", "", 405},
		{"GET", "/nope", "", 404},
	} {
		wantStatus(t, tc.method+" "+tc.path, c.invalid(tc.method, tc.path, tc.body), tc.want)
	}

	// A wait that passes its bound: the consumer stopped, a write's version
	// is not reached.
	stopConsumer()
	late := c.valid("PUT", "/api", s.putBody(key, "late"))
	wantStatus(t, "PUT, consumer stopped", late, 202)
	lateTok := tokenOf(t, late)
	wantStatus(t, "GET min_version, not reached", c.valid("GET", "/api"+q(key)+"&min_version="+lateTok+"&timeout=50ms", ""), 504)
	wantStatus(t, "PUT wait=applied, not applied", c.valid("PUT", "/api?wait=applied&timeout=50ms", s.putBody(key, "later")), 202)
}
