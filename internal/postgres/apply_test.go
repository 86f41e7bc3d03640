package postgres_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"

	"github.com/google/uuid"

	"github.com/kvstack/kvstack/internal/kv"
)

func TestApplyBatchLastWriterWins(t *testing.T) {
	type step struct {
		ops  []kv.Op
		want []kv.Outcome
	}
	tests := []struct {
		name  string
		steps []step
		want  kv.Entry // the key's state afterwards
	}{
		{
			name:  "new key applied",
			steps: []step{{[]kv.Op{put("k", "v1", ver(1, 1))}, []kv.Outcome{kv.Applied}}},
			want:  kv.Entry{Key: "k", Value: "v1", Version: ver(1, 1)},
		},
		{
			name: "newer put applied",
			steps: []step{
				{[]kv.Op{put("k", "v1", ver(1, 1))}, []kv.Outcome{kv.Applied}},
				{[]kv.Op{put("k", "v2", ver(2, 1))}, []kv.Outcome{kv.Applied}},
			},
			want: kv.Entry{Key: "k", Value: "v2", Version: ver(2, 1)},
		},
		{
			name: "re-apply is a duplicate",
			steps: []step{
				{[]kv.Op{put("k", "v1", ver(1, 1))}, []kv.Outcome{kv.Applied}},
				{[]kv.Op{put("k", "v1", ver(1, 1))}, []kv.Outcome{kv.Duplicate}},
			},
			want: kv.Entry{Key: "k", Value: "v1", Version: ver(1, 1)},
		},
		{
			name: "older put is stale",
			steps: []step{
				{[]kv.Op{put("k", "v2", ver(2, 1))}, []kv.Outcome{kv.Applied}},
				{[]kv.Op{put("k", "v1", ver(1, 9))}, []kv.Outcome{kv.Stale}},
			},
			want: kv.Entry{Key: "k", Value: "v2", Version: ver(2, 1)},
		},
		{
			name: "same microsecond: greater op id wins",
			steps: []step{
				{[]kv.Op{put("k", "b", ver(5, 2))}, []kv.Outcome{kv.Applied}},
				{[]kv.Op{put("k", "a", ver(5, 1))}, []kv.Outcome{kv.Stale}},
				{[]kv.Op{put("k", "c", ver(5, 3))}, []kv.Outcome{kv.Applied}},
			},
			want: kv.Entry{Key: "k", Value: "c", Version: ver(5, 3)},
		},
		{
			name:  "delete of an absent key leaves a tombstone",
			steps: []step{{[]kv.Op{del("k", ver(1, 1))}, []kv.Outcome{kv.Applied}}},
			want:  kv.Entry{Key: "k", Version: ver(1, 1), Deleted: true},
		},
		{
			name: "delete then older put stays deleted",
			steps: []step{
				{[]kv.Op{put("k", "v1", ver(1, 1))}, []kv.Outcome{kv.Applied}},
				{[]kv.Op{del("k", ver(3, 1))}, []kv.Outcome{kv.Applied}},
				{[]kv.Op{put("k", "late", ver(2, 1))}, []kv.Outcome{kv.Stale}},
			},
			want: kv.Entry{Key: "k", Version: ver(3, 1), Deleted: true},
		},
		{
			name: "redelivered delete is a duplicate",
			steps: []step{
				{[]kv.Op{del("k", ver(1, 1))}, []kv.Outcome{kv.Applied}},
				{[]kv.Op{del("k", ver(1, 1))}, []kv.Outcome{kv.Duplicate}},
			},
			want: kv.Entry{Key: "k", Version: ver(1, 1), Deleted: true},
		},
		{
			name: "put newer than the tombstone revives",
			steps: []step{
				{[]kv.Op{del("k", ver(1, 1))}, []kv.Outcome{kv.Applied}},
				{[]kv.Op{put("k", "back", ver(2, 1))}, []kv.Outcome{kv.Applied}},
			},
			want: kv.Entry{Key: "k", Value: "back", Version: ver(2, 1)},
		},
		{
			name: "older delete after a put is stale",
			steps: []step{
				{[]kv.Op{put("k", "v2", ver(2, 1))}, []kv.Outcome{kv.Applied}},
				{[]kv.Op{del("k", ver(1, 1))}, []kv.Outcome{kv.Stale}},
			},
			want: kv.Entry{Key: "k", Value: "v2", Version: ver(2, 1)},
		},
	}
	s := newStore(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Each case on its own key, so the cases share one schema.
			key := tt.name
			for i, st := range tt.steps {
				ops := slices.Clone(st.ops)
				for j := range ops {
					ops[j].Key = key
				}
				got := mustApply(t, s, ops...)
				if !slices.Equal(got, st.want) {
					t.Errorf("step %d: got outcomes %v, want %v", i+1, got, st.want)
				}
			}
			want := tt.want
			want.Key = key
			got, err := s.Get(t.Context(), key)
			if err != nil {
				t.Fatalf("Get: %v", err)
			}
			if !sameEntry(got, want) {
				t.Errorf("state: got %+v, want %+v", got, want)
			}
		})
	}
}

// TestApplyBatchOutcomesFollowOpsOrder: ApplyBatch writes in key order but
// answers in the caller's order.
func TestApplyBatchOutcomesFollowOpsOrder(t *testing.T) {
	s := newStore(t)
	mustApply(t, s, put("b", "old", ver(1, 1)), put("d", "new", ver(9, 1)))

	ops := []kv.Op{
		put("d", "late", ver(2, 1)), // stale
		put("a", "first", ver(1, 1)),
		put("c", "x", ver(1, 1)),
		put("b", "old", ver(1, 1)), // duplicate
		del("e", ver(1, 1)),
	}
	got := mustApply(t, s, ops...)
	want := []kv.Outcome{kv.Stale, kv.Applied, kv.Applied, kv.Duplicate, kv.Applied}
	if !slices.Equal(got, want) {
		t.Errorf("outcomes: got %v, want %v", got, want)
	}
}

func TestApplyBatchEmpty(t *testing.T) {
	s := newStore(t)
	got, err := s.ApplyBatch(t.Context(), nil)
	if err != nil || len(got) != 0 {
		t.Errorf("ApplyBatch(nil): got %v, %v; want no outcomes, no error", got, err)
	}
}

// TestApplyBatchConvergesWhateverTheDelivery delivers a random history of
// operations shuffled, in random chunks, some of them twice, and checks that
// every key ends at its greatest (timestamp, op id).
func TestApplyBatchConvergesWhateverTheDelivery(t *testing.T) {
	s := newStore(t)
	seed := rand.Uint64()
	rng := rand.New(rand.NewPCG(seed, 0))
	t.Logf("seed %d", seed)

	const keys, nOps = 25, 600
	ops := make([]kv.Op, nOps)
	for i := range ops {
		key := fmt.Sprintf("key-%02d", rng.IntN(keys))
		// Few distinct instants, so that many ops tie on time.
		v := kv.Version{Time: ver(int64(rng.IntN(20)), 0).Time, OpID: uuid.New()}
		if rng.IntN(4) == 0 {
			ops[i] = del(key, v)
		} else {
			ops[i] = put(key, fmt.Sprintf("value-%d", i), v)
		}
	}
	want := map[string]kv.Entry{}
	for _, op := range ops {
		if w, ok := want[op.Key]; !ok || op.Version.Newer(w.Version) {
			want[op.Key] = op.Entry()
		}
	}

	// Redeliver a fifth of the ops, then shuffle everything.
	delivery := slices.Clone(ops)
	for range nOps / 5 {
		delivery = append(delivery, ops[rng.IntN(nOps)])
	}
	rng.Shuffle(len(delivery), func(i, j int) { delivery[i], delivery[j] = delivery[j], delivery[i] })

	counts := map[kv.Outcome]int{}
	for len(delivery) > 0 {
		n := min(1+rng.IntN(40), len(delivery))
		chunk := delivery[:n]
		delivery = delivery[n:]
		winners, _ := kv.Winners(chunk)
		batch := make([]kv.Op, len(winners))
		for i, w := range winners {
			batch[i] = chunk[w]
		}
		for _, o := range mustApply(t, s, batch...) {
			counts[o]++
		}
	}
	t.Logf("outcomes: %v", counts)

	for key, w := range want {
		got, err := s.Get(t.Context(), key)
		if err != nil {
			t.Fatalf("Get(%q): %v", key, err)
		}
		if !sameEntry(got, w) {
			t.Errorf("Get(%q): got %+v, want the newest op's %+v", key, got, w)
		}
	}
}

// TestApplyBatchConcurrentOverlap: two consumers applying overlapping
// batches at once both succeed, and the keys converge to the newest ops.
func TestApplyBatchConcurrentOverlap(t *testing.T) {
	s := newStore(t)
	const rounds, keys = 30, 50

	// Writer w writes every key in every round with version (round, w), in
	// its own key order, so their row locks interleave.
	batch := func(round int, w byte) []kv.Op {
		ops := make([]kv.Op, keys)
		for k := range keys {
			key := fmt.Sprintf("k%03d", k)
			if w == 2 {
				key = fmt.Sprintf("k%03d", keys-1-k)
			}
			if (k+round)%7 == 0 {
				ops[k] = del(key, ver(int64(round), w))
			} else {
				ops[k] = put(key, fmt.Sprintf("r%d-w%d", round, w), ver(int64(round), w))
			}
		}
		return ops
	}

	var wg sync.WaitGroup
	errs := make(chan error, 2*rounds)
	for _, w := range []byte{1, 2} {
		wg.Go(func() {
			for round := range rounds {
				// Writer 2 runs its rounds in reverse, so that its ops are
				// newer on some keys and older on others.
				r := round
				if w == 2 {
					r = rounds - 1 - round
				}
				if _, err := s.ApplyBatch(t.Context(), batch(r, w)); err != nil {
					errs <- fmt.Errorf("writer %d round %d: %w", w, r, err)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	// The newest op on every key is writer 2's in the last round.
	for _, op := range batch(rounds-1, 2) {
		got, err := s.Get(t.Context(), op.Key)
		if err != nil {
			t.Fatalf("Get(%q): %v", op.Key, err)
		}
		if !sameEntry(got, op.Entry()) {
			t.Errorf("Get(%q): got %+v, want %+v", op.Key, got, op.Entry())
		}
	}
}

func TestApplyBatchRejectsTwoOpsOnOneKey(t *testing.T) {
	s := newStore(t)
	_, err := s.ApplyBatch(t.Context(), []kv.Op{put("k", "a", ver(1, 1)), put("k", "b", ver(2, 1))})
	if !errors.Is(err, kv.ErrInvalid) {
		t.Errorf("ApplyBatch with a repeated key: got %v, want kv.ErrInvalid", err)
	}
}
