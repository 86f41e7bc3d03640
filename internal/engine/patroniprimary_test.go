package engine_test

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"

	"github.com/kvstack/kvstack/internal/engine"
)

// A node is the primary only once its PostgreSQL takes writes: Patroni
// answers /primary with 200 as soon as it holds the leader key, while a
// promoted standby still replays its WAL (the body's role says replica
// then). A restore that took it for the primary ran pgbackrest check,
// which found no primary.
func TestPatroniPrimaryTakesWrites(t *testing.T) {
	cases := []struct {
		name, body string
		code       int
		primary    bool
	}{
		{"leader promoted", `{"state": "running", "role": "master"}`, 200, true},
		{"leader promoted (Patroni 3.1+)", `{"state": "running", "role": "primary"}`, 200, true},
		{"leader key held, promotion under way", `{"state": "running", "role": "replica"}`, 200, false},
		{"a replica", `{"state": "running", "role": "replica"}`, 503, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path != "/primary" {
					http.NotFound(w, r)
					return
				}
				w.WriteHeader(c.code)
				_, _ = w.Write([]byte(c.body))
			}))
			defer srv.Close()
			_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
			rest, _ := strconv.Atoi(port)
			pc := engine.NewPatroni("kv", &engine.Etcd{}, &engine.PatroniNode{Name: "pg1", RestPort: rest})
			got, err := pc.Primary(context.Background())
			if (err == nil) != c.primary || (c.primary && got.Name != "pg1") {
				t.Errorf("Primary = %v, %v; want a primary: %v", got, err, c.primary)
			}
		})
	}
}
