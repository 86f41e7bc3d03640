package app

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kvstack/kvstack/internal/health"
)

// The rule of each capability, dependency by dependency: what an outage of
// each, or of several, leaves each process able to do.
func TestCapabilities(t *testing.T) {
	type states map[string]health.State
	const ok, degraded, down = health.OK, health.Degraded, health.Down
	for _, tt := range []struct {
		failed   []string
		api      states
		consumer states
	}{
		{nil, states{"read": ok, "write": ok, "list": ok}, states{"apply": ok}},
		{[]string{checkRedis}, states{"read": degraded, "write": ok, "list": ok}, states{"apply": degraded}},
		{[]string{checkRabbitMQ}, states{"read": ok, "write": down, "list": ok}, states{"apply": down}},
		{[]string{checkPostgres}, states{"read": degraded, "write": ok, "list": down}, states{"apply": down}},
		{[]string{checkPostgres, checkRedis}, states{"read": down, "write": ok, "list": down}, states{"apply": down}},
		{[]string{checkPostgres, checkRabbitMQ}, states{"read": degraded, "write": down, "list": down}, states{"apply": down}},
		{[]string{checkPostgres, checkRedis, checkRabbitMQ}, states{"read": down, "write": down, "list": down}, states{"apply": down}},
		{[]string{checkClock}, states{"read": ok, "write": down, "list": ok}, states{"apply": ok}},
	} {
		t.Run(strings.Join(append([]string{"down"}, tt.failed...), " "), func(t *testing.T) {
			failed := health.Failed{}
			for _, f := range tt.failed {
				failed[f] = errors.New("refused")
			}
			for what, c := range map[string]struct {
				caps []health.Capability
				want states
			}{"api": {apiCapabilities, tt.api}, "consumer": {consumerCapabilities, tt.consumer}} {
				got := states{}
				for _, cap := range c.caps {
					a := cap.Assess(failed)
					got[cap.Name] = a.State
					if (a.State == ok) != (a.Reason == "") {
						t.Errorf("%s %s: %s with reason %q: want a reason exactly when not ok", what, cap.Name, a.State, a.Reason)
					}
				}
				if !maps.Equal(got, c.want) {
					t.Errorf("%s: %v, want %v", what, got, c.want)
				}
			}
		})
	}
}

// readiness is what a process's /readyz answered.
type readiness struct {
	code         int
	status       string
	capabilities map[string]string // name → state
	reasons      map[string]string
	checks       map[string]string
}

func (r readiness) String() string {
	return fmt.Sprintf("%d %s %v %v %v", r.code, r.status, r.capabilities, r.reasons, r.checks)
}

func readyz(t *testing.T, base string) readiness {
	t.Helper()
	resp, err := http.Get(base + "/readyz")
	if err != nil {
		t.Fatalf("GET %s/readyz: %v", base, err)
	}
	defer resp.Body.Close()
	var body struct {
		Status       string
		Capabilities map[string]struct{ State, Reason string }
		Checks       map[string]string
	}
	raw, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(raw, &body); err != nil {
		t.Fatalf("%s/readyz: %q is not its JSON: %v", base, raw, err)
	}
	r := readiness{code: resp.StatusCode, status: body.Status, capabilities: map[string]string{}, reasons: map[string]string{}, checks: body.Checks}
	for name, c := range body.Capabilities {
		r.capabilities[name], r.reasons[name] = c.State, c.Reason
	}
	return r
}

// waitReadiness waits until base's /readyz answers code with the given
// capability states (others may be anything), and returns it.
func waitReadiness(t *testing.T, base string, code int, want map[string]string) readiness {
	t.Helper()
	var r readiness
	eventually(t, 20*time.Second, fmt.Sprintf("/readyz %d with %v", code, want), func() (bool, string) {
		r = readyz(t, base)
		for name, state := range want {
			if r.capabilities[name] != state {
				return false, r.String()
			}
		}
		return r.code == code, r.String()
	})
	return r
}

// capabilityGauges are a process's kvstack_capability gauges, by
// capability, and its kvstack_ready.
func capabilityGauges(t *testing.T, base string) (map[string]float64, float64) {
	t.Helper()
	exposition := scrape(t, base, false)
	caps := map[string]float64{}
	for _, m := range metricFamily(t, exposition, "kvstack_capability").GetMetric() {
		caps[m.GetLabel()[0].GetValue()] = m.GetGauge().GetValue()
	}
	return caps, metricFamily(t, exposition, "kvstack_ready").GetMetric()[0].GetGauge().GetValue()
}

// tally counts a load's answers by what they were, and keeps a few of the
// unexpected ones to show.
type tally struct {
	mu     sync.Mutex
	counts map[string]int
	odd    []string
}

func (c *tally) add(kind string, odd string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.counts == nil {
		c.counts = map[string]int{}
	}
	c.counts[kind]++
	if odd != "" && len(c.odd) < 5 {
		c.odd = append(c.odd, odd)
	}
}

func (c *tally) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	keys := slices.Sorted(maps.Keys(c.counts))
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %d", k, c.counts[k]))
	}
	return strings.Join(parts, ", ") + " " + strings.Join(c.odd, "; ")
}

// readLoad reads keys through base with 4 clients for d, each answer
// judged by ok: true counts it as "ok", false as "failed" (kept to show).
// It returns the tally.
func (s *stack) readLoad(base string, keys []string, d time.Duration, ok func(response) bool) *tally {
	s.t.Helper()
	var c tally
	var wg sync.WaitGroup
	stop := time.Now().Add(d)
	for i := range 4 {
		wg.Go(func() {
			for j := i; time.Now().Before(stop); j++ {
				r, err := s.via(base).try("GET", "/api?key="+keys[j%len(keys)], "")
				switch {
				case err != nil:
					c.add("failed", err.Error())
				case ok(r):
					c.add("ok", "")
				default:
					c.add("failed", fmt.Sprintf("%d %v", r.status, r.body))
				}
			}
		})
	}
	wg.Wait()
	return &c
}
