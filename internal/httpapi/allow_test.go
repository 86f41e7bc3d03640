package httpapi

import (
	"net/http"
	"testing"

	"github.com/rs/zerolog"
)

// A 405 names the methods the route serves (RFC 9110, 15.5.6).
func TestMethodNotAllowedNamesAllow(t *testing.T) {
	api := newTestHandler(&fakeService{entries: map[string]string{}})
	health := NewHealthHandler(nil, zerolog.Nop())
	for _, tc := range []struct {
		name           string
		h              http.Handler
		method, target string
		want           string
	}{
		{"patch /api", api, "PATCH", "/api", "GET, HEAD, PUT, DELETE"},
		{"made-up method on /api", api, "BREW", "/api?key=a", "GET, HEAD, PUT, DELETE"},
		{"post /api/all", api, "POST", "/api/all", "GET, HEAD"},
		{"put /healthz", api, "PUT", "/healthz", "GET, HEAD"},
		{"delete /readyz of the consumer", health, "DELETE", "/readyz", "GET, HEAD"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := do(t, tc.h, tc.method, tc.target, "")
			if rec.Code != http.StatusMethodNotAllowed {
				t.Fatalf("status = %d, want 405", rec.Code)
			}
			if got := rec.Header().Get("Allow"); got != tc.want {
				t.Errorf("Allow = %q, want %q", got, tc.want)
			}
		})
	}
}
