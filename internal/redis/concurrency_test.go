package redis_test

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

// Readers fill random old and new versions while consumers apply every
// version in random order, and a watcher checks that no key ever moves back.
// Afterwards each key must hold its newest version, whatever the
// interleaving.
func TestConcurrentFillsAndApplies(t *testing.T) {
	const (
		keys      = 16
		versions  = 40 // per key
		fillers   = 8
		fills     = 300 // per filler
		appliers  = 4
		batchSize = 16
	)
	ctx := testContext(t)
	c, _, _ := newCache(t, nil)

	// history[k] holds key k's versions in increasing order; every third one
	// is a delete, and so is the newest version of every other key.
	history := make([][]kv.Entry, keys)
	for k := range history {
		key := fmt.Sprintf("key:%d", k)
		micros := int64(1_700_000_000_000_000)
		for i := range versions {
			micros += rand.Int64N(3) // equal timestamps happen: the op id decides
			v := kv.Version{Time: microsUTC(micros), OpID: uuid.New()}
			e := value(key, v, fmt.Sprintf("%s@%d", key, i))
			if i%3 == 2 || (i == versions-1 && k%2 == 0) {
				e = tombstone(key, v)
			}
			history[k] = append(history[k], e)
		}
		slices.SortFunc(history[k], func(a, b kv.Entry) int { return a.Version.Compare(b.Version) })
	}

	var all []kv.Entry
	for _, h := range history {
		all = append(all, h...)
	}
	rand.Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })

	done := make(chan struct{})
	var watch sync.WaitGroup
	watch.Go(func() { watchMonotonic(t, c, history, done) })

	var wg sync.WaitGroup
	for a := range appliers {
		wg.Go(func() {
			for start := a * batchSize; start < len(all); start += appliers * batchSize {
				batch := all[start:min(start+batchSize, len(all))]
				if err := c.Apply(ctx, batch); err != nil {
					t.Errorf("Apply: %v", err)
					return
				}
			}
		})
	}
	for range fillers {
		wg.Go(func() {
			for range fills {
				e := history[rand.IntN(keys)][rand.IntN(versions)]
				if _, err := c.Fill(ctx, e); err != nil {
					t.Errorf("Fill: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(done)
	watch.Wait()

	for _, h := range history {
		want := h[len(h)-1]
		got, ok := mustGet(t, ctx, c, want.Key)
		if !ok || !sameEntry(got, want) {
			t.Errorf("Get(%q) = %+v (hit %v), want the newest version %+v", want.Key, got, ok, want)
		}
	}
}

// watchMonotonic reads the keys until done, failing if a key's version ever
// goes back or its content does not match the version it carries.
func watchMonotonic(t *testing.T, c cacheGetter, history [][]kv.Entry, done <-chan struct{}) {
	last := make([]kv.Version, len(history))
	for {
		for k, h := range history {
			select {
			case <-done:
				return
			default:
			}
			got, err := c.Get(t.Context(), h[0].Key)
			if errors.Is(err, kv.ErrCacheMiss) {
				if !last[k].Time.IsZero() {
					t.Errorf("key %q: miss after version %s was cached", h[0].Key, last[k])
					return
				}
				continue
			}
			if err != nil {
				t.Errorf("Get(%q): %v", h[0].Key, err)
				return
			}
			if got.Version.Compare(last[k]) < 0 {
				t.Errorf("key %q went back from %s to %s", got.Key, last[k], got.Version)
				return
			}
			last[k] = got.Version
			i := slices.IndexFunc(h, func(e kv.Entry) bool { return e.Version.Compare(got.Version) == 0 })
			if i < 0 || !sameEntry(got, h[i]) {
				t.Errorf("key %q holds %+v, which no writer offered", got.Key, got)
				return
			}
		}
	}
}
