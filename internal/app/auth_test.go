package app

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"
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
	for path, want := range map[string]int{"/api?key=k": 401, "/api/all": 401, "/healthz": 200, "/readyz": 200, "/metrics": 200} {
		resp, err := bare.Get(s.api + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s without a token = %d, want %d", path, resp.StatusCode, want)
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
