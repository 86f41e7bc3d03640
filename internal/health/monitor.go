package health

import (
	"context"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// Monitor checks a process's dependencies every Interval and keeps the
// report of the last round. It is safe for concurrent use.
type Monitor struct {
	cfg    Config
	checks []Check
	caps   []Capability
	log    zerolog.Logger

	mu       sync.Mutex
	last     Report // Status unset until the first round ends
	draining bool
}

// NewMonitor returns a monitor of checks and the capabilities that follow
// from them; Run starts it. Until its first round ends it reports Starting.
func NewMonitor(cfg Config, checks []Check, caps []Capability, log zerolog.Logger) *Monitor {
	m := &Monitor{cfg: cfg, checks: checks, caps: caps, log: log.With().Str("component", "health").Logger()}
	for _, c := range caps {
		m.last.Capabilities = append(m.last.Capabilities, CapabilityState{Name: c.Name, Assessment: Assessment{State: Down, Reason: "not checked yet"}})
	}
	return m
}

// Run checks the dependencies at once, then every Interval, until ctx ends.
func (m *Monitor) Run(ctx context.Context) {
	t := time.NewTicker(m.cfg.Interval)
	defer t.Stop()
	for {
		m.round(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Drain marks the process as stopping: from now on it reports Draining,
// whatever its dependencies say.
func (m *Monitor) Drain() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.draining {
		m.draining = true
		m.log.Info().Msg("draining: not ready from now on")
	}
}

// Report is the last round's report, with the process's status now.
func (m *Monitor) Report() Report {
	m.mu.Lock()
	defer m.mu.Unlock()
	r := m.last
	switch {
	case m.draining:
		r.Status = Draining
	case r.Status == "":
		r.Status = Starting
	}
	return r
}

// round checks every dependency at once, each within Timeout, and assesses
// the capabilities from the failures.
func (m *Monitor) round(ctx context.Context) {
	results := make([]CheckResult, len(m.checks))
	var wg sync.WaitGroup
	for i, c := range m.checks {
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(ctx, m.cfg.Timeout)
			defer cancel()
			results[i] = CheckResult{Name: c.Name, Err: c.Ping(cctx)}
		})
	}
	wg.Wait()
	if ctx.Err() != nil {
		return // stopped midway: the results say nothing of the dependencies
	}
	failed := Failed{}
	for _, res := range results {
		if res.Err != nil {
			failed[res.Name] = res.Err
		}
	}
	r := Report{Status: NotReady, Checks: results, Capabilities: make([]CapabilityState, len(m.caps))}
	for i, c := range m.caps {
		r.Capabilities[i] = CapabilityState{Name: c.Name, Assessment: c.Assess(failed)}
		if r.Capabilities[i].State != Down {
			r.Status = Ready
		}
	}
	m.mu.Lock()
	prev := m.last
	m.last = r
	m.mu.Unlock()
	m.logChanges(prev, r)
}

// logChanges logs what changed since the previous round: a dependency that
// stopped or started answering, a capability whose state changed. A
// steady outage is not logged again every round.
func (m *Monitor) logChanges(prev, cur Report) {
	first := prev.Status == ""
	for i, c := range cur.Checks {
		wasUp := first || prev.Checks[i].Err == nil
		switch {
		case c.Err != nil && wasUp:
			m.log.Warn().Err(c.Err).Str("dependency", c.Name).Msg("dependency check failed")
		case c.Err == nil && !wasUp:
			m.log.Info().Str("dependency", c.Name).Msg("dependency answers again")
		}
	}
	for i, c := range cur.Capabilities {
		if !first && prev.Capabilities[i].Assessment == c.Assessment {
			continue
		}
		if first && c.State == OK {
			continue
		}
		ev := m.log.Warn()
		if c.State == OK {
			ev = m.log.Info()
		}
		ev.Str("capability", c.Name).Str("state", c.State.String()).Str("reason", c.Reason).Msg("capability changed")
	}
}
