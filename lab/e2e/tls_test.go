//go:build e2e

package e2e

import (
	"bytes"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/kvstack/kvstack/lab/native"
	"github.com/kvstack/kvstack/lab/nginxtest"
)

// The stack's edge speaks TLS as docs/SECURITY.md says
// (nginxtest.TLSCases: TLS 1.2 and 1.3 only, no CBC suites, a certificate
// of the stack's CA, HTTP/2, HSTS on every answer, plain HTTP refused),
// and the stack made that CA and certificate where KV_TLS_CA and
// nginx.conf name them.
func TestEdgeTLS(t *testing.T) {
	h := newHarness(t)
	tok, err := native.Token(h.s, native.DefaultToken)
	if err != nil {
		t.Fatal(err)
	}
	edge := nginxtest.TLSEdge{URL: h.nginx, Trust: h.trust(t), Authorization: "Bearer " + tok}
	for _, c := range nginxtest.TLSCases() {
		t.Run(c.Name, func(t *testing.T) { c.Check(t, edge) })
	}

	t.Run("the stack's certificate files", func(t *testing.T) {
		conf, err := os.ReadFile(h.s.ConfigDir() + "/nginx.conf")
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{"NGINX_TLS_CERT", "NGINX_TLS_KEY"} {
			if !bytes.Contains(conf, []byte(" "+h.s.Get(name)+";")) {
				t.Errorf("nginx.conf does not name %s (%s)", name, h.s.Get(name))
			}
		}
		fi, err := os.Stat(h.s.Get("NGINX_TLS_KEY"))
		if err != nil || fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("the edge's key %s: %v %v, want it readable by its owner alone", h.s.Get("NGINX_TLS_KEY"), fi.Mode(), err)
		}
	})

	// A write and its read over HTTP/2, through the same client shape a
	// browser or a gRPC-era client uses.
	t.Run("a write read back over HTTP/2", func(t *testing.T) {
		transport, err := native.EdgeTransport(h.s, 4)
		if err != nil {
			t.Fatal(err)
		}
		transport.ForceAttemptHTTP2 = true
		c, err := native.Client(h.s, "e2e-h2", transport, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.CloseIdleConnections()
		h2 := &harness{stackEnv: h.stackEnv, nginx: h.nginx, client: c, spec: h.spec}
		key := uniq("tls-h2")
		r := h2.do(t, http.MethodPut, "/api?wait=applied", []byte(`{"key":"`+key+`","value":"over h2"}`))
		if r.status != http.StatusOK && r.status != http.StatusAccepted {
			t.Fatalf("PUT over HTTP/2: %d %s", r.status, r.body)
		}
		resp, err := c.Get(h.nginx + "/api?key=" + key)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.ProtoMajor != 2 {
			t.Fatalf("the client spoke %s, want HTTP/2", resp.Proto)
		}
		got := h2.do(t, http.MethodGet, "/api?key="+key, nil)
		if got.status != http.StatusOK || got.json(t)["value"] != "over h2" {
			t.Fatalf("GET over HTTP/2: %d %s, want the value written", got.status, got.body)
		}
	})
}
