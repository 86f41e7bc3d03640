package rabbitmq

import (
	"testing"
	"time"
)

func TestBackoff(t *testing.T) {
	b := newBackoff(100*time.Millisecond, 5*time.Second)
	ceilings := []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond,
		1600 * time.Millisecond, 3200 * time.Millisecond, 5 * time.Second, 5 * time.Second}
	for i, ceil := range ceilings {
		if got := b.next(); got > ceil || got < ceil*8/10 {
			t.Errorf("wait %d = %s, want within [%s, %s]", i, got, ceil*8/10, ceil)
		}
	}
	b.reset()
	if got := b.next(); got > 100*time.Millisecond {
		t.Errorf("after reset: %s, want ≤ 100ms", got)
	}
}
