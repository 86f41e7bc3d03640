package httpapi

import (
	"context"
	"net/http"
	"strings"

	"github.com/kvstack/kvstack/internal/auth"
	"github.com/kvstack/kvstack/internal/health"
)

func authState(ctx context.Context, authn *auth.Authenticator) string {
	switch {
	case !authn.Enabled():
		return "off"
	case authn.Ping(ctx) != nil:
		return "on (" + authn.Ping(ctx).Error() + ": every token is refused)"
	}
	return "on"
}

func (a *api) healthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, r, http.StatusOK, map[string]string{"status": "ok"})
}

// readyBody is /readyz's answer: the process's status, what it can do and
// what its dependencies answered; with an error code and message, as every
// error, when it is not ready.
type readyBody struct {
	Error        string                    `json:"error,omitempty"`
	Message      string                    `json:"message,omitempty"`
	Status       health.Status             `json:"status"`
	Capabilities map[string]capabilityBody `json:"capabilities"`
	Checks       map[string]string         `json:"checks"`
	// Auth is "on" when the data routes need a token, "off" when
	// KV_AUTH=off serves every client as an admin; on with the reason
	// when no signing key is loaded (every token is then refused).
	// Absent for a process without data routes.
	Auth string `json:"auth,omitempty"`
}

type capabilityBody struct {
	State  string `json:"state"`
	Reason string `json:"reason,omitempty"`
}

// readyz answers 200 while the process can serve something, else 503 with
// why: starting, draining, or every capability down. It reads the last
// round of checks: a probe never waits on a dependency.
func (a *api) readyz(w http.ResponseWriter, r *http.Request) {
	rep := health.Report{Status: health.Ready}
	if a.ready != nil {
		rep = a.ready.Report()
	}
	body := readyBody{
		Status:       rep.Status,
		Capabilities: make(map[string]capabilityBody, len(rep.Capabilities)),
		Checks:       make(map[string]string, len(rep.Checks)),
	}
	if a.auth != nil {
		body.Auth = authState(r.Context(), a.auth)
	}
	var down []string
	for _, c := range rep.Capabilities {
		body.Capabilities[c.Name] = capabilityBody{State: c.State.String(), Reason: c.Reason}
		down = append(down, c.Name+" ("+c.Reason+")")
	}
	for _, c := range rep.Checks {
		body.Checks[c.Name] = c.Text()
	}
	switch rep.Status {
	case health.Ready:
		writeJSON(w, r, http.StatusOK, body)
		return
	case health.Starting:
		body.Message = "the process is starting"
	case health.Draining:
		body.Message = "the process is stopping: it finishes what it holds and takes nothing new"
	default:
		body.Message = "nothing can be served: " + strings.Join(down, ", ") + " down"
	}
	body.Error = string(rep.Status)
	writeJSON(w, r, http.StatusServiceUnavailable, body)
}
