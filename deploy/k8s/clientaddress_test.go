package k8s

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	"sigs.k8s.io/yaml"
)

// A client cannot choose the address the API records as client.address.
// The API takes X-Real-IP, which nginx overwrites with $remote_addr
// (nginx/nginx.conf.template); the Gateway API cannot set a header from the
// client's address, so every rule of the HTTPRoute removes a client's
// X-Real-IP and the API records its peer, the Gateway's proxy. Whatever
// the values say: each variant, and each with the clients' trace context
// trusted and HSTS off (the other filters of a rule).
func TestEdgeRemovesClientsRealIP(t *testing.T) {
	extra := filepath.Join(t.TempDir(), "trusting.yaml")
	if err := os.WriteFile(extra, []byte("edge:\n  hsts: \"\"\n  gateway:\n    trustTraceContext: true\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, variant := range variants {
		for _, values := range [][]string{{ValuesFile(variant)}, {ValuesFile(variant), extra}} {
			name := variant
			if len(values) > 1 {
				name += "+trustTraceContext"
			}
			t.Run(name, func(t *testing.T) {
				r, err := Render(context.Background(), testNamespace, values...)
				if err != nil {
					t.Fatal(err)
				}
				routes := 0
				for _, doc := range r.Manifests {
					if !strings.Contains(doc, "kind: HTTPRoute") {
						continue
					}
					var hr gatewayv1.HTTPRoute
					if err := yaml.UnmarshalStrict([]byte(doc), &hr); err != nil {
						t.Fatal(err)
					}
					routes++
					for _, rule := range hr.Spec.Rules {
						var removed []string
						for _, f := range rule.Filters {
							if f.Type == gatewayv1.HTTPRouteFilterRequestHeaderModifier && f.RequestHeaderModifier != nil {
								removed = append(removed, f.RequestHeaderModifier.Remove...)
							}
						}
						if !slices.ContainsFunc(removed, func(h string) bool { return strings.EqualFold(h, "X-Real-IP") }) {
							t.Errorf("HTTPRoute %s %v: passes a client's X-Real-IP on to the API, which records it as client.address (removes %v)", hr.Name, rule.Matches, removed)
						}
					}
				}
				if routes == 0 {
					t.Fatal("no HTTPRoute rendered")
				}
			})
		}
	}
}
