package rabbitmq

import (
	"slices"
	"testing"
)

func TestLinkSettledBookkeeping(t *testing.T) {
	l := &link{done: map[uint64]struct{}{}}
	steps := []struct {
		tags           []uint64
		wantContiguous bool
		wantSettled    uint64
	}{
		{[]uint64{2, 1, 3}, true, 3},
		{[]uint64{4, 6}, false, 4}, // 5 still in the other consumer's buffer
		{[]uint64{5, 7}, true, 7},  // 6 settled before: still contiguous
		{[]uint64{8}, true, 8},
	}
	for i, s := range steps {
		b := &batch{tags: s.tags, max: slices.Max(s.tags)}
		if got := l.contiguous(b); got != s.wantContiguous {
			t.Errorf("step %d: contiguous(%v) = %v, want %v", i, s.tags, got, s.wantContiguous)
		}
		l.markSettled(b)
		if l.settled != s.wantSettled {
			t.Errorf("step %d: settled = %d, want %d", i, l.settled, s.wantSettled)
		}
	}
	if len(l.done) != 0 {
		t.Errorf("done = %v, want empty once the prefix caught up", l.done)
	}
}
