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

// A test's bound grows by as much as the start bound is stretched.
func TestAllowForLoad(t *testing.T) {
	t.Setenv("START_TIMEOUT", "300")
	if got := AllowForLoad(4 * time.Minute); got != 7*time.Minute {
		t.Errorf("AllowForLoad(4m) with START_TIMEOUT=300 = %s, want 7m", got)
	}
}
