package kv

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/google/uuid"
)

func TestVersionCompare(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	idA := uuid.MustParse("00000000-0000-4000-8000-00000000000a")
	idB := uuid.MustParse("00000000-0000-4000-8000-00000000000b")
	tests := []struct {
		name string
		v, w Version
		want int
	}{
		{"older time", Version{t0, idB}, Version{t0.Add(time.Microsecond), idA}, -1},
		{"newer time", Version{t0.Add(time.Microsecond), idA}, Version{t0, idB}, 1},
		{"same time, op id breaks the tie", Version{t0, idA}, Version{t0, idB}, -1},
		{"same version", Version{t0, idA}, Version{t0, idA}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.v.Compare(tt.w); got != tt.want {
				t.Errorf("Compare = %d, want %d", got, tt.want)
			}
			if got, want := tt.v.Newer(tt.w), tt.want > 0; got != want {
				t.Errorf("Newer = %v, want %v", got, want)
			}
		})
	}
}

func TestVersionStringOrdersLikeCompare(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 2000; i++ {
		v, w := randomVersion(r), randomVersion(r)
		if i%7 == 0 {
			w.Time = v.Time // exercise the op id tie-break
		}
		vs, ws := v.String(), w.String()
		var byString int
		switch {
		case vs < ws:
			byString = -1
		case vs > ws:
			byString = 1
		}
		if got := v.Compare(w); got != byString {
			t.Fatalf("Compare(%s, %s) = %d, but strings compare %d", vs, ws, got, byString)
		}
		back, err := ParseVersion(vs)
		if err != nil {
			t.Fatalf("ParseVersion(%q): %v", vs, err)
		}
		if back.Compare(v) != 0 || !back.Time.Equal(v.Time) {
			t.Fatalf("ParseVersion(%q) = %v, want %v", vs, back, v)
		}
	}
}

func TestParseVersionRejectsMalformed(t *testing.T) {
	for _, s := range []string{"", "x", "00000000000000000001:not-a-uuid-at-all-not-a-uuid-at-all1", "0000000000000000000a:00000000-0000-4000-8000-00000000000a"} {
		if _, err := ParseVersion(s); err == nil {
			t.Errorf("ParseVersion(%q) succeeded, want an error", s)
		}
	}
}

// TestWinnersConverge is the property behind last-writer-wins: whatever the
// order in which a set of operations on a key arrives, however often each is
// repeated and however the stream is cut into batches, applying the batch
// winners one batch after another leaves the operation with the greatest
// (timestamp, op_id).
func TestWinnersConverge(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 11))
	for trial := 0; trial < 500; trial++ {
		ops := randomOps(r, 1+r.IntN(12), 1+r.IntN(3))
		want := make(map[string]Op)
		for _, op := range ops {
			if cur, ok := want[op.Key]; !ok || op.Version.Newer(cur.Version) {
				want[op.Key] = op
			}
		}
		// A delivery: every op at least once, some twice, in random order.
		stream := append([]Op(nil), ops...)
		for _, op := range ops {
			if r.IntN(3) == 0 {
				stream = append(stream, op)
			}
		}
		r.Shuffle(len(stream), func(i, j int) { stream[i], stream[j] = stream[j], stream[i] })

		state := make(map[string]Op)
		for len(stream) > 0 {
			n := min(len(stream), 1+r.IntN(5))
			batch := stream[:n]
			stream = stream[n:]
			winners, losers := Winners(batch)
			if len(winners)+len(losers) != len(batch) {
				t.Fatalf("winners %d + losers %d != batch %d", len(winners), len(losers), len(batch))
			}
			for i, w := range winners {
				if i > 0 && batch[winners[i-1]].Key >= batch[w].Key {
					t.Fatalf("winners not in strict key order: %q then %q", batch[winners[i-1]].Key, batch[w].Key)
				}
				op := batch[w]
				if cur, ok := state[op.Key]; !ok || op.Version.Newer(cur.Version) {
					state[op.Key] = op
				}
			}
		}
		for key, w := range want {
			if got := state[key]; got.Version.Compare(w.Version) != 0 || got.Kind != w.Kind {
				t.Fatalf("trial %d key %q: converged to %v %v, want %v %v", trial, key, got.Kind, got.Version, w.Kind, w.Version)
			}
		}
	}
}

// TestWinnersEveryPermutation checks the property exhaustively for a small
// set with a duplicate: all 6! orders of six deliveries.
func TestWinnersEveryPermutation(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 5))
	ops := randomOps(r, 5, 1)
	ops = append(ops, ops[2]) // a redelivery
	var want Op
	for i, op := range ops {
		if i == 0 || op.Version.Newer(want.Version) {
			want = op
		}
	}
	permute(ops, 0, func(order []Op) {
		// Delivered one at a time, each applied only if newer.
		state := order[0]
		for _, op := range order[1:] {
			if op.Version.Newer(state.Version) {
				state = op
			}
		}
		winners, _ := Winners(order)
		if len(winners) != 1 || order[winners[0]].Version != want.Version {
			t.Fatalf("batch winner of %v is not %v", order, want.Version)
		}
		if state.Version != want.Version {
			t.Fatalf("one-by-one delivery of %v converged to %v, want %v", order, state.Version, want.Version)
		}
	})
}

func permute(ops []Op, k int, visit func([]Op)) {
	if k == len(ops) {
		visit(ops)
		return
	}
	for i := k; i < len(ops); i++ {
		ops[k], ops[i] = ops[i], ops[k]
		permute(ops, k+1, visit)
		ops[k], ops[i] = ops[i], ops[k]
	}
}

func randomVersion(r *rand.Rand) Version {
	var id uuid.UUID
	for i := range id {
		id[i] = byte(r.IntN(4)) // few distinct bytes: ties in the prefix happen
	}
	t := time.UnixMicro(1_700_000_000_000_000 + r.Int64N(5)).UTC()
	return Version{Time: t, OpID: id}
}

func randomOps(r *rand.Rand, n, keys int) []Op {
	ops := make([]Op, n)
	for i := range ops {
		kind := KindPut
		if r.IntN(3) == 0 {
			kind = KindDelete
		}
		ops[i] = Op{Kind: kind, Key: string(rune('a' + r.IntN(keys))), Value: "v", Version: randomVersion(r)}
	}
	return ops
}

// AppendText writes what fmt did before it: zero-padded microseconds and
// the op id as uuid.UUID.String writes it, so the order of the texts is
// still the order of the versions.
func TestVersionText(t *testing.T) {
	for _, v := range []Version{
		NewVersion(time.Now()),
		{Time: time.UnixMicro(0).UTC()},
		{Time: time.UnixMicro(1<<62 + 12345).UTC(), OpID: uuid.Max},
		{Time: time.UnixMicro(-5).UTC(), OpID: uuid.New()},
	} {
		want := fmt.Sprintf("%020d:%s", v.Time.UnixMicro(), v.OpID)
		if got := v.String(); got != want {
			t.Errorf("String() = %q, want %q", got, want)
		}
		if got := string(v.AppendText([]byte("x"))); got != "x"+want {
			t.Errorf("AppendText = %q, want %q", got, "x"+want)
		}
	}
	v := NewVersion(time.Now())
	if n := testing.AllocsPerRun(100, func() { v.AppendText(make([]byte, 0, 64)[:0]) }); n > 1 {
		t.Errorf("AppendText allocates %v times, want at most the buffer", n)
	}
}
