package httpapi

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/kvstack/kvstack/internal/health"
)

// report is a Readiness that reports what it is told.
type report health.Report

func (r report) Report() health.Report { return health.Report(r) }

func TestReadyz(t *testing.T) {
	ok := health.Assessment{State: health.OK}
	degraded := health.Assessment{State: health.Degraded, Reason: "redis unavailable: reads served from postgres"}
	down := health.Assessment{State: health.Down, Reason: "rabbitmq unavailable"}
	checks := []health.CheckResult{
		{Name: "postgres"},
		{Name: "redis", Err: errors.New("dial tcp: connection refused")},
		// A failure that says what to do is shown as it is.
		{Name: "rabbitmq", Err: fmt.Errorf("not connected: %w", adviceErr{})},
	}
	caps := []health.CapabilityState{{Name: "read", Assessment: degraded}, {Name: "write", Assessment: down}, {Name: "list", Assessment: ok}}
	allDown := []health.CapabilityState{{Name: "read", Assessment: down}, {Name: "write", Assessment: down}}
	for _, tt := range []struct {
		name   string
		report health.Report
		status int
		error  string
		in     string // in the message
	}{
		{"serving reads and lists", health.Report{Status: health.Ready, Capabilities: caps, Checks: checks}, http.StatusOK, "", ""},
		{"starting", health.Report{Status: health.Starting, Capabilities: caps}, http.StatusServiceUnavailable, "starting", "starting"},
		{"draining", health.Report{Status: health.Draining, Capabilities: caps, Checks: checks}, http.StatusServiceUnavailable, "draining", "stopping"},
		{"nothing served", health.Report{Status: health.NotReady, Capabilities: allDown, Checks: checks}, http.StatusServiceUnavailable, "not_ready", "write (rabbitmq unavailable)"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rec := do(t, newReadyHandler(&fakeService{}, report(tt.report)), "GET", "/readyz", "")
			m := decodeJSON(t, rec)
			if rec.Code != tt.status || m["status"] != string(tt.report.Status) || (m["error"] != nil) != (tt.error != "") ||
				(tt.error != "" && (m["error"] != tt.error || !strings.Contains(fmt.Sprint(m["message"]), tt.in))) {
				t.Fatalf("readyz = %d %v, want %d, status %q, error %q naming %q", rec.Code, m, tt.status, tt.report.Status, tt.error, tt.in)
			}
			gotCaps, _ := m["capabilities"].(map[string]any)
			for _, c := range tt.report.Capabilities {
				got, _ := gotCaps[c.Name].(map[string]any)
				reason := any(c.Reason) // left out when there is none
				if c.Reason == "" {
					reason = nil
				}
				if got["state"] != c.State.String() || got["reason"] != reason {
					t.Errorf("capability %s = %v, want %s (%q)", c.Name, got, c.State, c.Reason)
				}
			}
			gotChecks, _ := m["checks"].(map[string]any)
			if len(tt.report.Checks) > 0 && (gotChecks["postgres"] != "ok" || gotChecks["redis"] != "unavailable" || gotChecks["rabbitmq"] != (adviceErr{}).Error()) {
				t.Errorf("checks = %v, want postgres ok, redis unavailable (no driver error), rabbitmq's advice", gotChecks)
			}
		})
	}
	if rec := do(t, newReadyHandler(&fakeService{}, report{Status: health.NotReady}), "GET", "/healthz", ""); rec.Code != 200 {
		t.Fatalf("healthz = %d, want 200 while the process lives", rec.Code)
	}
}

type adviceErr struct{}

func (adviceErr) Error() string  { return "queue q is a classic queue: run the migrations" }
func (adviceErr) Advice() string { return "run the migrations" }
