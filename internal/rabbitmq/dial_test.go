package rabbitmq

import (
	"testing"
	"time"
)

func TestBackoff(t *testing.T) {
	b := newBackoff(100*time.Millisecond, 5*time.Second)
	intervals := []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond,
		1600 * time.Millisecond, 3200 * time.Millisecond, 5 * time.Second, 5 * time.Second}
	for i, d := range intervals {
		if got := b.NextBackOff(); got > d*12/10 || got < d*8/10 {
			t.Errorf("wait %d = %s, want %s ± 20%%", i, got, d)
		}
	}
	b.Reset()
	if got := b.NextBackOff(); got > 120*time.Millisecond {
		t.Errorf("after reset: %s, want ≤ 120ms", got)
	}
}
