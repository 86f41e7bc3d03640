package consumer

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/rs/zerolog"

	"github.com/kvstack/kvstack/internal/kv"
	"github.com/kvstack/kvstack/internal/msgsig"
)

// memStore is an in-memory Store with the same last-writer-wins rule.
type memStore struct {
	rows    map[string]kv.Entry
	reject  map[string]bool // keys the store refuses for good
	down    bool
	batches [][]kv.Op
}

func (s *memStore) ApplyBatch(_ context.Context, ops []kv.Op) ([]kv.Outcome, error) {
	if s.down {
		return nil, kv.ErrUnavailable
	}
	s.batches = append(s.batches, ops)
	for _, op := range ops {
		if s.reject[op.Key] {
			return nil, kv.ErrInvalid
		}
	}
	out := make([]kv.Outcome, len(ops))
	for i, op := range ops {
		cur, ok := s.rows[op.Key]
		switch {
		case !ok || op.Version.Newer(cur.Version):
			s.rows[op.Key] = op.Entry()
			out[i] = kv.Applied
		case op.Version == cur.Version:
			out[i] = kv.Duplicate
		default:
			out[i] = kv.Stale
		}
	}
	return out, nil
}

type memCache struct {
	entries map[string]kv.Entry
	down    bool
	purges  int
}

func (c *memCache) Apply(_ context.Context, entries []kv.Entry) error {
	if c.down {
		return kv.ErrUnavailable
	}
	for _, e := range entries {
		if cur, ok := c.entries[e.Key]; !ok || e.Version.Newer(cur.Version) {
			c.entries[e.Key] = e
		}
	}
	return nil
}

func (c *memCache) Purge(context.Context) error {
	if c.down {
		return kv.ErrUnavailable
	}
	c.purges++
	c.entries = map[string]kv.Entry{}
	return nil
}

// testKeys sign the test messages; msgsig's tests cover the keys.
var testKeys = func() *msgsig.Keys {
	ks, err := msgsig.ParseKeys("the-processor-tests-key-of-32-bytes-or-more")
	if err != nil {
		panic(err)
	}
	return ks
}()

func newTestProcessor() (*Processor, *memStore, *memCache) {
	return newTestProcessorWith(Checks{})
}

// newTestProcessorWith is newTestProcessor with checks, their limits and
// keys defaulted.
func newTestProcessorWith(checks Checks) (*Processor, *memStore, *memCache) {
	store := &memStore{rows: map[string]kv.Entry{}, reject: map[string]bool{}}
	cache := &memCache{entries: map[string]kv.Entry{}}
	if checks.Limits == (kv.Limits{}) {
		checks.Limits = kv.DefaultLimits()
	}
	if checks.Keys == nil {
		checks.Keys = testKeys
	}
	if checks.MaxClockSkew == 0 {
		checks.MaxClockSkew = time.Minute
	}
	return NewProcessor(store, cache, checks, zerolog.Nop()), store, cache
}

var t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func op(kind kv.Kind, key, value string, micros int64) kv.Op {
	return kv.Op{Kind: kind, Key: key, Value: value, Version: kv.Version{
		Time: t0.Add(time.Duration(micros) * time.Microsecond), OpID: uuid.New(),
	}}
}

func msg(t *testing.T, o kv.Op) Message {
	t.Helper()
	body, err := kv.EncodeMessage(o)
	if err != nil {
		t.Fatal(err)
	}
	return signedBy(o.Kind, o.WrittenBy, body)
}

// signed is a message of kind with body, signed as the API signs.
func signed(kind kv.Kind, body []byte) Message { return signedBy(kind, "", body) }

// signedBy is signed naming writer.
func signedBy(kind kv.Kind, writer string, body []byte) Message {
	m := Message{Queue: string(kind) + "_q", Kind: kind, Body: body, WrittenBy: writer, Ctx: context.Background()}
	m.KeyID, m.Signature = testKeys.Sign(string(kind), writer, body)
	return m
}

func outcomesOf(results []Result) []kv.Outcome {
	out := make([]kv.Outcome, len(results))
	for i, r := range results {
		out[i] = r.Outcome
	}
	return out
}

func TestHandleAppliesNewestPerKey(t *testing.T) {
	p, store, cache := newTestProcessor()
	oldPut := op(kv.KindPut, "a", "old", 1)
	newPut := op(kv.KindPut, "a", "new", 2)
	del := op(kv.KindDelete, "b", "", 3)
	batch := []Message{msg(t, newPut), msg(t, oldPut), msg(t, del), msg(t, newPut)}

	results, err := p.Handle(context.Background(), batch)
	if err != nil {
		t.Fatalf("Handle: %v", err)
	}
	// The in-batch duplicate of newPut loses to itself: only one can win.
	if got, want := outcomesOf(results), []kv.Outcome{kv.Applied, kv.Stale, kv.Applied, kv.Stale}; !slices.Equal(got, want) {
		t.Fatalf("outcomes = %v, want %v", got, want)
	}
	if results[1].Op.Version != oldPut.Version {
		t.Errorf("result 1 carries op %+v, want the decoded older put", results[1].Op)
	}
	if got := store.rows["a"]; got.Value != "new" || got.Deleted {
		t.Errorf("store a = %+v, want the newer put", got)
	}
	if got := store.rows["b"]; !got.Deleted {
		t.Errorf("store b = %+v, want a tombstone", got)
	}
	if len(store.batches) != 1 || len(store.batches[0]) != 2 || store.batches[0][0].Key != "a" {
		t.Errorf("store saw batches %v, want one batch of the 2 winners in key order", store.batches)
	}
	if got := cache.entries["a"]; got.Value != "new" {
		t.Errorf("cache a = %+v, want the newer put", got)
	}
	if got := cache.entries["b"]; !got.Deleted {
		t.Errorf("cache b = %+v, want a tombstone", got)
	}
}

func TestHandleRedeliveryRewritesCache(t *testing.T) {
	p, _, cache := newTestProcessor()
	put := op(kv.KindPut, "a", "v", 1)
	if _, err := p.Handle(context.Background(), []Message{msg(t, put)}); err != nil {
		t.Fatal(err)
	}
	// The cache lost the write (say the consumer died before updating it).
	delete(cache.entries, "a")
	results, err := p.Handle(context.Background(), []Message{msg(t, put)})
	if err != nil {
		t.Fatal(err)
	}
	if got := cache.entries["a"]; got.Value != "v" {
		t.Fatalf("after redelivery cache a = %+v, want v", got)
	}
	if got := results[0].Outcome; got != kv.Duplicate {
		t.Fatalf("redelivery's outcome = %v, want duplicate", got)
	}
}

func TestHandleDeleteThenOlderPutStaysDeleted(t *testing.T) {
	p, store, cache := newTestProcessor()
	put := op(kv.KindPut, "a", "v", 1)
	del := op(kv.KindDelete, "a", "", 2)
	var got []kv.Outcome
	for _, m := range []Message{msg(t, del), msg(t, put)} {
		results, err := p.Handle(context.Background(), []Message{m})
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, results[0].Outcome)
	}
	if !store.rows["a"].Deleted || !cache.entries["a"].Deleted {
		t.Fatalf("store %+v cache %+v: the older put resurrected the key", store.rows["a"], cache.entries["a"])
	}
	if want := []kv.Outcome{kv.Applied, kv.Stale}; !slices.Equal(got, want) {
		t.Fatalf("outcomes = %v, want %v", got, want)
	}
}

func TestHandleDeadLettersUndecodable(t *testing.T) {
	p, store, _ := newTestProcessor()
	good := op(kv.KindPut, "good", "v", 1)
	batch := []Message{
		signed(kv.KindPut, []byte("{not json")),
		msg(t, good),
		signed(kv.KindDelete, []byte(`{"key":"","timestamp":"x","op_id":"y"}`)),
	}
	results, err := p.Handle(context.Background(), batch)
	if err != nil {
		t.Fatalf("Handle: %v", err)
	}
	if got, want := outcomesOf(results), []kv.Outcome{kv.DeadLettered, kv.Applied, kv.DeadLettered}; !slices.Equal(got, want) {
		t.Fatalf("outcomes = %v, want %v", got, want)
	}
	if got := []string{results[0].Reason, results[2].Reason}; !slices.Equal(got, []string{ReasonInvalid, ReasonInvalid}) {
		t.Errorf("reasons = %q, want %s", got, ReasonInvalid)
	}
	if store.rows["good"].Value != "v" {
		t.Fatalf("the good message was not applied alongside the poison")
	}
}

// A message whose signature is missing, made with a key the consumer does
// not hold, or not the MAC of the message (a forged body, a put's body on
// the delete queue) is dead-lettered with its reason, and its key is not
// touched; the signed messages of the batch are applied.
func TestHandleDeadLettersBadSignatures(t *testing.T) {
	p, store, _ := newTestProcessor()
	good := msg(t, op(kv.KindPut, "good", "v", 1))

	unsigned := msg(t, op(kv.KindPut, "a", "unsigned", 1))
	unsigned.KeyID, unsigned.Signature = "", ""
	foreign := msg(t, op(kv.KindPut, "b", "foreign key", 1))
	otherKeys, err := msgsig.ParseKeys("a-key-the-consumer-does-not-hold-32-bytes")
	if err != nil {
		t.Fatal(err)
	}
	foreign.KeyID, foreign.Signature = otherKeys.Sign(string(kv.KindPut), "", foreign.Body)
	forged := msg(t, op(kv.KindPut, "c", "signed", 1))
	forged.Body, _ = kv.EncodeMessage(op(kv.KindPut, "c", "forged", 2))
	moved := msg(t, op(kv.KindPut, "d", "a put", 1))
	moved.Kind, moved.Queue = kv.KindDelete, "delete_q"

	results, err := p.Handle(context.Background(), []Message{unsigned, good, foreign, forged, moved})
	if err != nil {
		t.Fatalf("Handle: %v", err)
	}
	want := []Result{
		{Outcome: kv.DeadLettered, Reason: msgsig.ReasonUnsigned},
		{Outcome: kv.Applied},
		{Outcome: kv.DeadLettered, Reason: msgsig.ReasonUnknownKey},
		{Outcome: kv.DeadLettered, Reason: msgsig.ReasonBad},
		{Outcome: kv.DeadLettered, Reason: msgsig.ReasonBad},
	}
	for i, w := range want {
		if results[i].Outcome != w.Outcome || results[i].Reason != w.Reason {
			t.Errorf("message %d: %v (%q), want %v (%q)", i, results[i].Outcome, results[i].Reason, w.Outcome, w.Reason)
		}
	}
	for _, k := range []string{"a", "b", "c", "d"} {
		if e, ok := store.rows[k]; ok {
			t.Errorf("key %s written by a refused message: %+v", k, e)
		}
	}
	if store.rows["good"].Value != "v" {
		t.Errorf("the signed message was not applied")
	}
}

// A signed message stamped more than KV_MAX_CLOCK_SKEW past the reference
// clock (an API's clock a year ahead, or the end of time) is dead-lettered
// and its key untouched; one within the bound is applied.
func TestHandleDeadLettersFutureTimestamps(t *testing.T) {
	now := t0.Add(time.Hour)
	p, store, _ := newTestProcessorWith(Checks{MaxClockSkew: time.Minute, Now: func() time.Time { return now }})
	within := op(kv.KindPut, "within", "v", 0)
	within.Version.Time = now.Add(59 * time.Second)
	ahead := op(kv.KindPut, "ahead", "v", 0)
	ahead.Version.Time = now.Add(61 * time.Second)
	endOfTime := op(kv.KindDelete, "end", "", 0)
	endOfTime.Version.Time = time.Date(9999, 12, 31, 23, 59, 59, 999999000, time.UTC)

	results, err := p.Handle(context.Background(), []Message{msg(t, within), msg(t, ahead), msg(t, endOfTime)})
	if err != nil {
		t.Fatalf("Handle: %v", err)
	}
	want := []Result{{Outcome: kv.Applied}, {Outcome: kv.DeadLettered, Reason: ReasonFuture}, {Outcome: kv.DeadLettered, Reason: ReasonFuture}}
	for i, w := range want {
		if results[i].Outcome != w.Outcome || results[i].Reason != w.Reason {
			t.Errorf("message %d: %v (%q), want %v (%q)", i, results[i].Outcome, results[i].Reason, w.Outcome, w.Reason)
		}
	}
	if _, ok := store.rows["ahead"]; ok {
		t.Errorf("the message a minute and a second ahead was applied")
	}
	if _, ok := store.rows["end"]; ok {
		t.Errorf("the message stamped 9999-12-31 was applied")
	}
}

// KV_ACCEPT_UNSIGNED_MESSAGES applies a message with no signature headers,
// and counts it; a message that has them is checked all the same.
func TestHandleAcceptUnsigned(t *testing.T) {
	var counted []string
	p, store, _ := newTestProcessorWith(Checks{AcceptUnsigned: true, OnUnsigned: func(q string) { counted = append(counted, q) }})
	unsigned := msg(t, op(kv.KindPut, "a", "unsigned", 1))
	unsigned.KeyID, unsigned.Signature = "", ""
	forged := msg(t, op(kv.KindPut, "b", "signed", 1))
	forged.Body, _ = kv.EncodeMessage(op(kv.KindPut, "b", "forged", 2))

	results, err := p.Handle(context.Background(), []Message{unsigned, forged})
	if err != nil {
		t.Fatalf("Handle: %v", err)
	}
	if got, want := outcomesOf(results), []kv.Outcome{kv.Applied, kv.DeadLettered}; !slices.Equal(got, want) {
		t.Fatalf("outcomes = %v, want %v", got, want)
	}
	if store.rows["a"].Value != "unsigned" || !slices.Equal(counted, []string{"put_q"}) {
		t.Errorf("unsigned message: row %+v, counted %q; want it applied and counted once", store.rows["a"], counted)
	}
}

func TestHandleStoreRejectionFailsTheBatch(t *testing.T) {
	p, store, cache := newTestProcessor()
	store.reject["bad"] = true
	results, err := p.Handle(context.Background(), []Message{msg(t, op(kv.KindPut, "good", "v", 1)), msg(t, op(kv.KindPut, "bad", "v", 1))})
	if !errors.Is(err, kv.ErrInvalid) || results != nil {
		t.Fatalf("Handle = %v, %v; want no results and ErrInvalid, for the runner to isolate", results, err)
	}
	if len(cache.entries) != 0 {
		t.Fatalf("a rejected batch changed the cache: %v", cache.entries)
	}
}

func TestHandleStoreDownDecidesNothing(t *testing.T) {
	p, store, cache := newTestProcessor()
	store.down = true
	results, err := p.Handle(context.Background(), []Message{msg(t, op(kv.KindPut, "a", "v", 1))})
	if !errors.Is(err, kv.ErrUnavailable) || results != nil {
		t.Fatalf("Handle = %v, %v; want no results and ErrUnavailable", results, err)
	}
	if len(cache.entries) != 0 {
		t.Fatalf("a store outage changed the cache")
	}
}

func TestCacheRepairAfterOutage(t *testing.T) {
	p, store, cache := newTestProcessor()
	cache.entries["a"] = op(kv.KindPut, "a", "old", 1).Entry()
	cache.down = true
	if _, err := p.Handle(context.Background(), []Message{msg(t, op(kv.KindPut, "a", "new", 2))}); err != nil {
		t.Fatalf("a cache outage must not fail the batch: %v", err)
	}
	p.repairOnce(context.Background()) // still down: kept for later
	if n := p.PendingRepairs(); n != 1 {
		t.Fatalf("pending repairs = %d, want 1", n)
	}
	cache.down = false
	p.repairOnce(context.Background())
	if got := cache.entries["a"]; got.Value != "new" || got.Version != store.rows["a"].Version {
		t.Fatalf("after repair cache a = %+v, want the stored %+v", got, store.rows["a"])
	}
	if n := p.PendingRepairs(); n != 0 {
		t.Fatalf("pending repairs = %d after a successful repair", n)
	}
}

func TestCacheRepairOverflowPurges(t *testing.T) {
	p, _, cache := newTestProcessor()
	p.repair = newCacheRepair(2)
	cache.down = true
	for i := range 3 {
		o := op(kv.KindPut, string(rune('a'+i)), "v", 1)
		if _, err := p.Handle(context.Background(), []Message{msg(t, o)}); err != nil {
			t.Fatal(err)
		}
	}
	if n, purge := p.repair.size(); n != 0 || !purge {
		t.Fatalf("pending = %d, purge = %v; want 0 and a purge owed", n, purge)
	}
	cache.down = false
	cache.entries["stale"] = op(kv.KindPut, "stale", "x", 0).Entry()
	p.repairOnce(context.Background())
	if cache.purges != 1 || len(cache.entries) != 0 {
		t.Fatalf("purges = %d, entries = %d; want the cache purged once", cache.purges, len(cache.entries))
	}
}

// A message's writer header reaches the store with its operation; a
// writer that could not have come from a token is dead-lettered.
func TestHandleKeepsTheWriter(t *testing.T) {
	p, store, _ := newTestProcessor()
	alice, mallory := op(kv.KindPut, "a", "v", 1), op(kv.KindPut, "c", "v", 1)
	alice.WrittenBy, mallory.WrittenBy = "alice", "mallory\x00"
	byAlice, byNobody, byForger := msg(t, alice), msg(t, op(kv.KindPut, "b", "v", 1)), msg(t, mallory)
	results, err := p.Handle(context.Background(), []Message{byAlice, byNobody, byForger})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := outcomesOf(results), []kv.Outcome{kv.Applied, kv.Applied, kv.DeadLettered}; !slices.Equal(got, want) {
		t.Fatalf("outcomes = %v, want %v", got, want)
	}
	if got := store.batches[0]; got[0].WrittenBy != "alice" || got[1].WrittenBy != "" {
		t.Errorf("the store got writers %q and %q, want alice and none", got[0].WrittenBy, got[1].WrittenBy)
	}
}
