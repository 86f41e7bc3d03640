package nginxtest_test

import (
	"net/http"
	"testing"

	"github.com/kvstack/kvstack/lab/native"
	"github.com/kvstack/kvstack/lab/nginxtest"
)

// The edge's TLS (nginxtest.TLSCases) on a private nginx; a plain HTTP
// request never reaches a replica.
func TestEdgeTLS(t *testing.T) {
	r := nginxtest.StartReplica(t)
	e := nginxtest.StartEdge(t, r.Addr, r.Addr, nil)
	trust, err := native.ClientTLS(e.CA)
	if err != nil {
		t.Fatal(err)
	}
	edge := nginxtest.TLSEdge{URL: e.URL, Trust: trust, Authorization: "Bearer " + nginxtest.Token}
	for _, c := range nginxtest.TLSCases() {
		t.Run(c.Name, func(t *testing.T) {
			before := r.Hits.Load()
			c.Check(t, edge)
			if c.Name == "plain HTTP refused" && r.Hits.Load() != before {
				t.Errorf("the plain request reached the replica (%d requests, %d before)", r.Hits.Load(), before)
			}
		})
	}
	// A 429 of the edge's own carries HSTS too (its location repeats it).
	lim := nginxtest.StartEdge(t, r.Addr, r.Addr, map[string]string{"NGINX_RATE_LIMIT": "1r/s", "NGINX_RATE_BURST": "1"})
	for range 5 {
		if a := lim.Do(t, http.MethodGet, "/api?key=k"); a.Status == http.StatusTooManyRequests {
			if a.Header.Get("Strict-Transport-Security") == "" {
				t.Fatalf("a 429 without Strict-Transport-Security: %v", a.Header)
			}
			return
		}
	}
	t.Fatal("no 429 at 1r/s, burst 1: the HSTS of the edge's own answers is not checked")
}
