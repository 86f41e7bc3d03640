package enginetest

import (
	"context"
	"fmt"
	"net/http"
	"strings"
)

// PatroniRESTProblems are what is wrong with the locking of a Patroni REST
// API at addr (host:port): each unsafe request (a switchover, a failover,
// a restart, a reinitialisation, a reload, a change of the DCS
// configuration, a cancelled switchover) must be refused with 401 without
// a password and with a wrong one, a reload with user's password accepted
// (202), and /health still answered without one (200). The check of
// internal/engine's locked HA engines and of docker-compose.ha.yml's
// Patroni (deploy/composetest).
func PatroniRESTProblems(ctx context.Context, addr, user, password string) []string {
	do := func(method, path, body, user, password string) (int, error) {
		req, err := http.NewRequestWithContext(ctx, method, "http://"+addr+path, strings.NewReader(body))
		if err != nil {
			return 0, err
		}
		req.Header.Set("Content-Type", "application/json")
		if user != "" {
			req.SetBasicAuth(user, password)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	var problems []string
	for _, c := range []struct{ method, path, body string }{
		{"POST", "/switchover", `{"leader":"pg1"}`},
		{"POST", "/failover", `{"candidate":"pg2"}`},
		{"POST", "/restart", `{}`},
		{"POST", "/reinitialize", `{}`},
		{"POST", "/reload", ``},
		{"PATCH", "/config", `{"ttl":30}`},
		{"PUT", "/config", `{}`},
		{"DELETE", "/switchover", ``},
	} {
		for _, who := range []struct{ name, user, password string }{{"without a password", "", ""}, {"with a wrong password", user, "nope"}} {
			code, err := do(c.method, c.path, c.body, who.user, who.password)
			if err != nil || code != http.StatusUnauthorized {
				problems = append(problems, fmt.Sprintf("Patroni REST API %s: %s %s %s answered %d (%v), want 401", addr, c.method, c.path, who.name, code, err))
			}
		}
	}
	if code, err := do("POST", "/reload", "", user, password); err != nil || code != http.StatusAccepted {
		problems = append(problems, fmt.Sprintf("Patroni REST API %s: POST /reload with the password: %d (%v), want 202", addr, code, err))
	}
	if code, err := do("GET", "/health", "", "", ""); err != nil || code != http.StatusOK {
		problems = append(problems, fmt.Sprintf("Patroni REST API %s: GET /health without a password: %d (%v), want 200", addr, code, err))
	}
	return problems
}
