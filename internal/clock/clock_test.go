package clock

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/kvstack/kvstack/internal/kv"
)

// fixed is a reference that says local time plus off.
func fixed(off time.Duration) Reference {
	return func(context.Context) (time.Time, error) { return time.Now().Add(off), nil }
}

func TestMonitorBounds(t *testing.T) {
	cfg := Config{MaxSkew: time.Minute, CheckInterval: time.Second}
	tests := []struct {
		name    string
		off     time.Duration // the reference minus this clock
		skewed  bool
		nowNear time.Duration
	}{
		{"in step", 0, false, 0},
		{"ahead within half", -29 * time.Second, false, -29 * time.Second},
		{"behind within half", 29 * time.Second, false, 29 * time.Second},
		{"ahead past half", -31 * time.Second, true, -31 * time.Second},
		{"a year behind", 365 * 24 * time.Hour, true, 365 * 24 * time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := NewMonitor(fixed(tt.off), cfg, zerolog.Nop())
			if err := m.Check(); err != nil || m.Skewed() {
				t.Fatalf("before any measure: Check = %v, want nil (not known to be off)", err)
			}
			off, err := m.Measure(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if d := off - tt.off; d < -50*time.Millisecond || d > 50*time.Millisecond {
				t.Errorf("measured offset %s, want about %s", off, tt.off)
			}
			err = m.Check()
			if got := err != nil; got != tt.skewed {
				t.Errorf("Check = %v, want skewed %v", err, tt.skewed)
			}
			if err != nil && (!errors.Is(err, ErrSkewed) || !errors.Is(err, kv.ErrUnavailable)) {
				t.Errorf("Check = %v, want ErrSkewed, a kv.ErrUnavailable", err)
			}
			if d := m.Now().Sub(time.Now().Add(tt.nowNear)); d < -50*time.Millisecond || d > 50*time.Millisecond {
				t.Errorf("Now is %s from the reference's time", d)
			}
		})
	}
}

// A failed read keeps what was measured: an unreachable PostgreSQL does not
// make a skewed clock good.
func TestMonitorKeepsTheLastOffset(t *testing.T) {
	fail := false
	ref := func(context.Context) (time.Time, error) {
		if fail {
			return time.Time{}, errors.New("down")
		}
		return time.Now().Add(-time.Hour), nil
	}
	m := NewMonitor(ref, Config{MaxSkew: time.Minute, CheckInterval: time.Second}, zerolog.Nop())
	if _, err := m.Measure(context.Background()); err != nil {
		t.Fatal(err)
	}
	fail = true
	if _, err := m.Measure(context.Background()); err == nil {
		t.Fatal("Measure with the reference down = nil error")
	}
	if !m.Skewed() {
		t.Errorf("a failed measure forgot the skew")
	}
}

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Errorf("defaults: %v", err)
	}
	if got := DefaultConfig().MaxSkew; got != time.Minute {
		t.Errorf("KV_MAX_CLOCK_SKEW default = %s, want 1m", got)
	}
	for _, c := range []Config{{MaxSkew: 0, CheckInterval: time.Second}, {MaxSkew: time.Minute}} {
		if err := c.Validate(); err == nil {
			t.Errorf("Validate(%+v) = nil", c)
		}
	}
}
