package app

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/kvstack/kvstack/internal/auth/authtest"
)

// The API needs a token on its data routes and on nothing else, says so
// on /readyz and in kvstack_auth_enabled, and counts the tokens it judged;
// KV_AUTH=off serves every client, and says that too.
func TestAPIAuthOnAndOff(t *testing.T) {
	s := newStack(t)
	s.startAPI()
	if r := s.do("PUT", "/api", s.putBody("k", "v")); r.status != http.StatusAccepted {
		t.Fatalf("PUT with the admin token = %d %v", r.status, r.body)
	}
	bare := &http.Client{Timeout: 5 * time.Second}
	// The probes answer whatever the replica's state (/readyz may still
	// say starting): anything but a 401.
	for path, open := range map[string]bool{"/api?key=k": false, "/api/all": false, "/healthz": true, "/readyz": true, "/metrics": true} {
		resp, err := bare.Get(s.api + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if refused := resp.StatusCode == http.StatusUnauthorized; refused == open {
			t.Errorf("GET %s without a token = %d; open %v", path, resp.StatusCode, open)
		}
	}
	if got := readyAuth(t, s.api); got != "on" {
		t.Errorf("/readyz auth %q, want on", got)
	}
	if g := gauge(t, s.api, "kvstack_auth_enabled"); g != 1 {
		t.Errorf("kvstack_auth_enabled = %v, want 1", g)
	}
	if g := gauge(t, s.api, `kvstack_auth_tokens_total{result="missing"}`); g < 2 {
		t.Errorf(`kvstack_auth_tokens_total{result="missing"} = %v, want the 2 refused`, g)
	}

	off := newStack(t)
	off.apiCfg.Auth.Enabled = false
	off.startAPI()
	resp, err := bare.Get(off.api + "/api?key=absent")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("KV_AUTH=off: GET without a token = %d, want 404", resp.StatusCode)
	}
	if got := readyAuth(t, off.api); got != "off" {
		t.Errorf("KV_AUTH=off: /readyz auth %q", got)
	}
	if g := gauge(t, off.api, "kvstack_auth_enabled"); g != 0 {
		t.Errorf("KV_AUTH=off: kvstack_auth_enabled = %v, want 0", g)
	}
}

func readyAuth(t *testing.T, base string) string {
	t.Helper()
	resp, err := http.Get(base + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Auth string `json:"auth"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	return body.Auth
}

// A write's token subject travels with it: in the message, onto its row's
// written_by, and back to a reader asking ?with=writer; a read-only
// token's write is refused and writes nothing.
func TestWritesAreAttributed(t *testing.T) {
	s := newStack(t)
	s.startAPI()
	s.startConsumer()
	alice := authtestClient(s, "alice", "writer")
	w := s.doWith(alice, "PUT", "/api?wait=applied", s.putBody("k", "v"))
	if w.status != http.StatusOK {
		t.Fatalf("PUT ?wait=applied as alice = %d %v", w.status, w.body)
	}
	e, err := s.store.Get(t.Context(), "k")
	if err != nil || e.WrittenBy != "alice" {
		t.Fatalf("the row: %+v, %v; want written_by alice", e, err)
	}
	r := s.do("GET", "/api?key=k&with=writer", "")
	if r.status != http.StatusOK || r.body["written_by"] != "alice" || r.body["value"] != "v" {
		t.Errorf("GET ?with=writer = %d %v, want v written by alice", r.status, r.body)
	}
	reader := authtestClient(s, "rita", "reader")
	if r := s.doWith(reader, "DELETE", "/api?key=k", ""); r.status != http.StatusForbidden {
		t.Errorf("DELETE by a reader = %d, want 403", r.status)
	}
	s.do("DELETE", "/api?key=k&wait=applied", "")
	if e, err := s.store.Get(t.Context(), "k"); err != nil || !e.Deleted || e.WrittenBy != "app-test" {
		t.Errorf("the tombstone: %+v, %v; want deleted by app-test", e, err)
	}
}

func authtestClient(s *stack, subject string, roles ...string) *http.Client {
	return authtest.Client(s.issuer.Token(s.t, subject, roles...), 15*time.Second)
}
