// Package health says what a process can do now. Liveness is the process
// answering (/healthz). Readiness is per capability: an API replica reads,
// writes and lists, a consumer applies, and each capability's state (ok,
// degraded, down) follows from the dependencies it needs. A process is
// ready while it can do something: a dependency that every replica shares
// going away degrades what needs it on every replica alike, and taking the
// replicas out of the edge for it would fail what they can still serve.
// It is not ready while starting, draining, or when every capability is
// down.
//
// A Monitor checks the dependencies in the background and keeps the latest
// Report, so that a probe or a scrape never waits on a dependency.
package health

import (
	"context"
	"errors"
	"time"

	"github.com/kvstack/kvstack/internal/envdefault"
)

// Config paces the dependency checks.
type Config struct {
	// Timeout bounds each dependency's check.
	Timeout time.Duration `env:"KV_READY_TIMEOUT" envDefault:"1s"`
	// Interval is how often the dependencies are checked: how stale
	// /readyz and the capability gauges may be.
	Interval time.Duration `env:"KV_READY_INTERVAL" envDefault:"1s"`
}

// DefaultConfig is Config with its documented defaults.
func DefaultConfig() Config { return envdefault.Of[Config]() }

// Validate rejects a configuration that cannot check anything.
func (c Config) Validate() error {
	if c.Timeout <= 0 || c.Interval <= 0 {
		return errors.New("KV_READY_TIMEOUT and KV_READY_INTERVAL must be positive")
	}
	return nil
}

// Check is one dependency: Ping returns nil when it answers.
type Check struct {
	Name string
	Ping func(ctx context.Context) error
}

// Advice is a check's failure that tells the operator what to do (a queue
// of the wrong type: run the migrations); the report shows its text rather
// than "unavailable".
type Advice interface {
	error
	Advice() string
}

// State is a capability's state. Its value is the capability gauge's:
// greater is better.
type State int

const (
	// Down: nothing of the capability can be served.
	Down State = iota
	// Degraded: served, in part or by a fallback (the reason says how).
	Degraded
	// OK: served as designed.
	OK
)

func (s State) String() string {
	switch s {
	case OK:
		return "ok"
	case Degraded:
		return "degraded"
	}
	return "down"
}

// Failed is the checks that failed in one round, by name.
type Failed map[string]error

// Has reports whether the check of that name failed.
func (f Failed) Has(name string) bool { _, ok := f[name]; return ok }

// Assessment is a capability's state, with why when it is not OK.
type Assessment struct {
	State  State
	Reason string
}

// Capability is something the process can do, and how its state follows
// from the checks that failed.
type Capability struct {
	Name   string
	Assess func(Failed) Assessment
}

// Status is the process's readiness as a whole.
type Status string

const (
	// Starting: no round of checks finished yet.
	Starting Status = "starting"
	// Ready: at least one capability is not down.
	Ready Status = "ready"
	// Draining: the process is stopping; it serves what is in flight.
	Draining Status = "draining"
	// NotReady: every capability is down.
	NotReady Status = "not_ready"
)

// Report is what the process can do, as of the last round of checks.
type Report struct {
	Status Status
	// Capabilities and Checks are in the order the process declared them.
	Capabilities []CapabilityState
	Checks       []CheckResult
}

// CapabilityState is one capability's assessment.
type CapabilityState struct {
	Name string
	Assessment
}

// CheckResult is one dependency's last check; Err is nil when it answered.
type CheckResult struct {
	Name string
	Err  error
}

// Text is what a report shows of the check: "ok", the advice of a failure
// that gives one, else "unavailable" (the error itself is logged, not
// shown).
func (c CheckResult) Text() string {
	if c.Err == nil {
		return "ok"
	}
	if adv, ok := errors.AsType[Advice](c.Err); ok {
		return adv.Error()
	}
	return "unavailable"
}

// Ready reports whether the process should be sent requests.
func (r Report) Ready() bool { return r.Status == Ready }
