package engine

import (
	"testing"
	"time"
)

// The start bound is the base on a machine with cores to spare, stretched
// by the load per core beyond that, and never past the maximum.
func TestStretch(t *testing.T) {
	for _, tt := range []struct {
		load float64
		want time.Duration
	}{
		{0, BaseStartTimeout},
		{0.5, BaseStartTimeout},
		{1, BaseStartTimeout},
		{2.5, 5 * time.Minute},
		{12.5, MaxStartTimeout},
	} {
		if got := stretch(BaseStartTimeout, tt.load); got != tt.want {
			t.Errorf("stretch(%s, %v) = %s, want %s", BaseStartTimeout, tt.load, got, tt.want)
		}
	}
}

// START_TIMEOUT, when set, is the bound, whatever the load.
func TestStartTimeoutFromTheEnvironment(t *testing.T) {
	t.Setenv("START_TIMEOUT", "300")
	if got := StartTimeout(); got != 5*time.Minute {
		t.Errorf("StartTimeout() with START_TIMEOUT=300 = %s, want 5m", got)
	}
	t.Setenv("START_TIMEOUT", "")
	if got := StartTimeout(); got < BaseStartTimeout || got > MaxStartTimeout {
		t.Errorf("StartTimeout() = %s, want between %s and %s", got, BaseStartTimeout, MaxStartTimeout)
	}
}

// A test's bound grows by as much as its engines' start bound may exceed
// the base: START_TIMEOUT's excess when set (a shorter START_TIMEOUT never
// shortens it), else the load's most, since the load read later may be
// higher than now's.
func TestAllowForLoad(t *testing.T) {
	for _, tt := range []struct {
		env  string
		want time.Duration
	}{
		{"300", 7 * time.Minute},
		{"60", 4 * time.Minute},
		{"", 4*time.Minute + MaxStartTimeout - BaseStartTimeout},
	} {
		t.Setenv("START_TIMEOUT", tt.env)
		if got := AllowForLoad(4 * time.Minute); got != tt.want {
			t.Errorf("AllowForLoad(4m) with START_TIMEOUT=%q = %s, want %s", tt.env, got, tt.want)
		}
	}
}

// A Private's supervisor reads the start bound at each wait, so a node
// restarted or added under a heavier load gets that load's bound: it was
// once taken at the first boot and kept.
func TestPrivateReadsTheStartBoundAtEachWait(t *testing.T) {
	t.Setenv("START_TIMEOUT", "60")
	p := newPrivate(t.TempDir(), nil)
	t.Setenv("START_TIMEOUT", "300")
	if got := p.stack.StartTimeout(); got != 5*time.Minute {
		t.Errorf("the private supervisor's bound after START_TIMEOUT changed to 300 = %s, want 5m", got)
	}
}
