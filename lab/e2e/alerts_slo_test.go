//go:build e2e

package e2e

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// lastHourRequests is what the availability SLI counted over the last hour:
// requests nginx answered on the API's routes.
const lastHourRequests = `sum(increase(kvstack_edge_http_requests_total{job="mtail",route=~"/api|/api/all"}[1h]))`

// sloAlert reports whether Prometheus has the SLO alert with these labels
// in state (firing), or none of them ("").
func sloAlert(p prometheus, labels map[string]string, state string) func() string {
	return func() string {
		alerts, err := p.alerts()
		if err != nil {
			return err.Error()
		}
		var seen []string
		for _, a := range alerts {
			if hasLabels(a.Labels, labels) {
				if a.State == state {
					return ""
				}
				seen = append(seen, a.State)
			}
		}
		if state == "" && len(seen) == 0 {
			return ""
		}
		return fmt.Sprintf("%v: want %q in Prometheus, have %v", labels, state, seen)
	}
}

// Both API replicas stop: nginx answers every read 502, the availability
// SLI's error ratio passes a page's threshold (14.4 times the budget, 1.44 %,
// over both the 1h and the 5m windows, or 6 times over 6h and 30m), and the
// SLO's page fires in Prometheus and reaches a webhook through
// Alertmanager, which holds the SLO's ticket back meanwhile.
// The replicas come back, reads are answered again, and as healthy traffic
// brings the error ratios back under the page's thresholds (over 5m and 1h,
// and over 30m and 6h, where 6 times the budget also pages) the page
// resolves, with a resolved notification.
//
// The rules are Sloth's, unchanged: the alerts have no `for:`, so the
// test sends as many 502s as the last hour's traffic demands (2 % of it
// within about 30 s), stops as soon as the page fires, and then reads until
// the ratios are back. Both replicas run again whatever happens.
func TestAvailabilityBurnAlert(t *testing.T) {
	a := startAlerting(t, 8*time.Minute)
	h, p, hook := a.h, a.p, a.hook
	page := map[string]string{"alertname": "AvailabilityBudgetBurn", "sloth_severity": "page", "severity": "critical"}

	// Before: no page, and a key to read.
	eventually(t, a.within(30*time.Second), sloAlert(p, page, ""))
	key := uniq("e2e-slo")
	if r := h.put(t, key, "v"); r.status != http.StatusAccepted {
		t.Fatalf("PUT %s: %d %s", key, r.status, r.body)
	}
	read := "/api?key=" + url.QueryEscape(key)
	eventually(t, a.within(20*time.Second), func() string {
		if r := h.do(t, http.MethodGet, read, nil); r.status != http.StatusOK {
			return fmt.Sprintf("GET %s: %d (not applied yet?)", key, r.status)
		}
		return ""
	})
	lastHour := 0.0
	if res, err := p.query(lastHourRequests); err == nil && len(res) == 1 {
		lastHour, _ = strconv.ParseFloat(fmt.Sprint(res[0].Value[1]), 64)
	}
	perSecond := min(max(int(lastHour*0.02/30), 5), 200)

	// The outage.
	t.Cleanup(func() {
		for _, name := range []string{"api1", "api2"} {
			if err := h.startProcess(name); err != nil {
				t.Errorf("restarting %s: %v", name, err)
			}
		}
	})
	for _, name := range []string{"api1", "api2"} {
		if err := h.stack().Supervisor().Stop(t.Context(), name); err != nil {
			t.Fatalf("stopping %s: %v", name, err)
		}
	}
	start := time.Now()
	stopErrors := readSteadily(h, read, perSecond)
	eventually(t, a.within(3*time.Minute), sloAlert(p, page, "firing"))
	answers := stopErrors()
	t.Logf("the page fires %s after both replicas stopped: %d reads at %d/s (the last hour held %.0f requests), answered %v",
		time.Since(start).Round(time.Second), answers.total(), perSecond, lastHour, answers)
	if answers.other() > 0 {
		t.Errorf("reads with both replicas down: %v, want 502 only", answers)
	}
	eventually(t, a.within(30*time.Second), func() string {
		n, ok := hook.find("firing", page)
		if !ok {
			return "no firing page at the webhook; " + hook.summary()
		}
		for _, k := range []string{"summary", "runbook"} {
			if n.Annotations[k] == "" || strings.Contains(n.Annotations[k], "{{") {
				return fmt.Sprintf("annotation %s = %q", k, n.Annotations[k])
			}
		}
		return ""
	})
	t.Logf("the page notified %s after both replicas stopped", time.Since(start).Round(time.Second))
	// The slow burn's ticket waits behind the page in Alertmanager. (On a
	// stack younger than a day its 1d and 3d windows hold little more than
	// the last hour, so it may fire, and be notified, just before the page;
	// with a day of history behind them the page comes first.)
	eventually(t, a.within(20*time.Second), func() string {
		alerts, err := a.amAlerts(`alertname="AvailabilityBudgetBurn"`, `sloth_severity="ticket"`)
		if err != nil {
			return err.Error()
		}
		for _, al := range alerts {
			if al.Status.State != "suppressed" || len(al.Status.InhibitedBy) == 0 {
				return fmt.Sprintf("the ticket is %s (inhibited by %v) while the page fires, want suppressed", al.Status.State, al.Status.InhibitedBy)
			}
		}
		return ""
	})

	// Recovery: both replicas back, reads answered, until the page resolves.
	for _, name := range []string{"api1", "api2"} {
		if err := h.startProcess(name); err != nil {
			t.Fatalf("starting %s again: %v", name, err)
		}
	}
	restarted := time.Now()
	eventually(t, a.within(20*time.Second), func() string {
		if r := h.do(t, http.MethodGet, read, nil); r.status != http.StatusOK {
			return fmt.Sprintf("GET %s through nginx: %d after the replicas restarted", key, r.status)
		}
		return ""
	})
	stopReads := readHard(h, read, 8)
	eventually(t, a.within(5*time.Minute), sloAlert(p, page, ""))
	healthy := stopReads()
	t.Logf("the page resolves %s after the replicas restarted, after %d reads, answered %v",
		time.Since(restarted).Round(time.Second), healthy.total(), healthy)
	eventually(t, a.within(30*time.Second), func() string {
		if _, ok := hook.find("resolved", page); !ok {
			return "no resolved page at the webhook; " + hook.summary()
		}
		return ""
	})
}

// answers counts responses by status (0: no response).
type answers map[int]int

func (a answers) total() (n int) {
	for _, c := range a {
		n += c
	}
	return n
}

// other counts what is neither 200 nor 502.
func (a answers) other() int { return a.total() - a[http.StatusOK] - a[http.StatusBadGateway] }

// readSteadily GETs path through nginx perSecond times a second until the
// returned func is called, which returns what was answered.
func readSteadily(h *harness, path string, perSecond int) (stop func() answers) {
	return readUntil(h, path, 1, time.Second/time.Duration(perSecond))
}

// readHard GETs path through nginx from workers in a loop, as fast as the
// stack answers, until the returned func is called.
func readHard(h *harness, path string, workers int) (stop func() answers) {
	return readUntil(h, path, workers, 0)
}

func readUntil(h *harness, path string, workers int, every time.Duration) (stop func() answers) {
	var done atomic.Bool
	var wg sync.WaitGroup
	var mu sync.Mutex
	got := answers{}
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := answers{}
			next := time.Now()
			for !done.Load() {
				if every > 0 {
					time.Sleep(time.Until(next))
					// A slow answer delays the pace, never bunches it.
					if behind := time.Now().Add(-every); next.Before(behind) {
						next = behind
					}
					next = next.Add(every)
				}
				r, err := h.try(http.MethodGet, h.nginx+path, nil)
				if err != nil {
					r.status = 0
				}
				local[r.status]++
			}
			mu.Lock()
			for k, v := range local {
				got[k] += v
			}
			mu.Unlock()
		}()
	}
	return func() answers {
		done.Store(true)
		wg.Wait()
		return got
	}
}
