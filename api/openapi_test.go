package api_test

import (
	"context"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/go-chi/chi/v5"
	"github.com/rs/zerolog"

	"github.com/kvstack/kvstack/api"
	"github.com/kvstack/kvstack/internal/httpapi"
)

func load(t *testing.T) *openapi3.T {
	t.Helper()
	doc, err := openapi3.NewLoader().LoadFromData(api.OpenAPI)
	if err != nil {
		t.Fatalf("load api/openapi.yaml: %v", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("api/openapi.yaml is not a valid OpenAPI document: %v", err)
	}
	return doc
}

func TestSpecIsValid(t *testing.T) {
	doc := load(t)
	if !doc.IsOpenAPI31OrLater() {
		t.Errorf("openapi: %s, want 3.1", doc.OpenAPI)
	}
}

// The spec's paths and methods are exactly the router's: a route added or
// removed on one side fails here.
func TestSpecRoutesAreTheRouters(t *testing.T) {
	doc := load(t)
	var spec []string
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			spec = append(spec, method+" "+path)
		}
	}
	h := httpapi.NewHandler(nil, nil, nil, nil, httpapi.DefaultConfig(), zerolog.Nop(), nil)
	got := routes(t, h)
	slices.Sort(spec)
	if !slices.Equal(got, spec) {
		t.Errorf("the router serves\n  %s\nthe spec has\n  %s", strings.Join(got, "\n  "), strings.Join(spec, "\n  "))
	}
	// The consumer serves the probes only, as the spec writes them.
	for _, r := range routes(t, httpapi.NewHealthHandler(nil, zerolog.Nop())) {
		if !slices.Contains(spec, r) {
			t.Errorf("the consumer serves %s, which the spec lacks", r)
		}
	}
}

func routes(t *testing.T, h http.Handler) []string {
	t.Helper()
	r, ok := h.(chi.Routes)
	if !ok {
		t.Fatalf("%T is not a chi router", h)
	}
	var got []string
	err := chi.Walk(r, func(method, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		got = append(got, method+" "+route)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(got)
	return got
}

// docs/API.md's table of error codes holds exactly the spec's codes.
func TestDocsListTheSpecsErrorCodes(t *testing.T) {
	doc := load(t)
	var spec []string
	for _, v := range doc.Components.Schemas["Error"].Value.Properties["error"].Value.Enum {
		spec = append(spec, v.(string))
	}
	page, err := os.ReadFile("../docs/API.md")
	if err != nil {
		t.Fatal(err)
	}
	_, table, ok := strings.Cut(string(page), "\n## Errors\n")
	if !ok {
		t.Fatal("docs/API.md has no ## Errors section")
	}
	table, _, _ = strings.Cut(table, "\n## ")
	var docs []string
	for _, line := range strings.Split(table, "\n") {
		cells := strings.Split(line, "|")
		if len(cells) < 4 {
			continue
		}
		for _, m := range regexp.MustCompile("`([a-z_]+)`").FindAllStringSubmatch(cells[2], -1) {
			docs = append(docs, m[1])
		}
	}
	slices.Sort(spec)
	slices.Sort(docs)
	if !slices.Equal(spec, docs) {
		t.Errorf("docs/API.md's error table lists\n  %v\nthe spec's Error codes are\n  %v", docs, spec)
	}
}
