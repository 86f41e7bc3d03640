package redis_test

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/kvstack/kvstack/internal/kv"
	"github.com/kvstack/kvstack/internal/redis"
)

func TestGet(t *testing.T) {
	ctx := testContext(t)
	c, _, _ := newCache(t, nil)
	mustFill(t, ctx, c, value("live", ver(10, 1), "hello"))
	mustFill(t, ctx, c, value("empty", ver(10, 1), ""))
	mustFill(t, ctx, c, tombstone("gone", ver(10, 1)))

	tests := []struct {
		key     string
		want    kv.Entry
		wantHit bool
	}{
		{key: "absent", wantHit: false},
		{key: "live", want: value("live", ver(10, 1), "hello"), wantHit: true},
		{key: "empty", want: value("empty", ver(10, 1), ""), wantHit: true},
		{key: "gone", want: tombstone("gone", ver(10, 1)), wantHit: true},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			got, err := c.Get(ctx, tt.key)
			if !tt.wantHit {
				if !errors.Is(err, kv.ErrCacheMiss) {
					t.Fatalf("Get(%q) = %+v, %v; want kv.ErrCacheMiss", tt.key, got, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Get(%q): %v", tt.key, err)
			}
			if !sameEntry(got, tt.want) {
				t.Errorf("Get(%q) = %+v, want %+v", tt.key, got, tt.want)
			}
		})
	}
}

// An older kvstack kept its shard marks, plain strings, at
// <prefix>master-mark:N, the name the client key "master-mark:N" has now.
// Left over after an upgrade, such a string is a miss to Get, and Fill and
// Apply replace it with the key's entry.
func TestLeftoverMarkUnderAClientKey(t *testing.T) {
	ctx := testContext(t)
	c, client, cfg := newCache(t, nil)
	for _, k := range []string{"master-mark:0", "master-mark:1"} {
		if err := client.Set(ctx, cfg.KeyPrefix+k, "an-old-node-id", 0).Err(); err != nil {
			t.Fatal(err)
		}
		if got, ok := mustGet(t, ctx, c, k); ok {
			t.Errorf("Get(%s) over a leftover mark = %+v, want a miss", k, got)
		}
	}
	if !mustFill(t, ctx, c, value("master-mark:0", ver(10, 1), "filled")) {
		t.Errorf("Fill over a leftover mark refused")
	}
	applied := value("master-mark:1", ver(10, 1), "applied")
	if err := c.Apply(ctx, []kv.Entry{applied}); err != nil {
		t.Fatalf("Apply over a leftover mark: %v", err)
	}
	for _, want := range []kv.Entry{value("master-mark:0", ver(10, 1), "filled"), applied} {
		if got, ok := mustGet(t, ctx, c, want.Key); !ok || !sameEntry(got, want) {
			t.Errorf("Get(%s) = %+v (hit %v), want %+v", want.Key, got, ok, want)
		}
	}
}

func TestFillCompareAndSet(t *testing.T) {
	tests := []struct {
		name      string
		before    []kv.Entry // filled first, in order
		fill      kv.Entry
		wantStore bool
		want      kv.Entry
	}{
		{
			name: "absent key takes any version",
			fill: value("k", ver(5, 1), "a"), wantStore: true,
			want: value("k", ver(5, 1), "a"),
		},
		{
			name:   "newer replaces older",
			before: []kv.Entry{value("k", ver(5, 1), "old")},
			fill:   value("k", ver(6, 1), "new"), wantStore: true,
			want: value("k", ver(6, 1), "new"),
		},
		{
			name:   "same version refused",
			before: []kv.Entry{value("k", ver(5, 1), "first")},
			fill:   value("k", ver(5, 1), "second"), wantStore: false,
			want: value("k", ver(5, 1), "first"),
		},
		{
			name:   "older version refused",
			before: []kv.Entry{value("k", ver(6, 1), "new")},
			fill:   value("k", ver(5, 1), "old"), wantStore: false,
			want: value("k", ver(6, 1), "new"),
		},
		{
			name:   "same microsecond: op id breaks the tie",
			before: []kv.Entry{value("k", ver(5, 2), "b")},
			fill:   value("k", ver(5, 1), "a"), wantStore: false,
			want: value("k", ver(5, 2), "b"),
		},
		{
			name:   "order is numeric across digit counts",
			before: []kv.Entry{value("k", ver(9, 9), "nine")},
			fill:   value("k", ver(10, 0), "ten"), wantStore: true,
			want: value("k", ver(10, 0), "ten"),
		},
		{
			name:   "old fill after a newer delete does not resurrect the key",
			before: []kv.Entry{value("k", ver(5, 1), "old"), tombstone("k", ver(6, 1))},
			fill:   value("k", ver(5, 1), "old"), wantStore: false,
			want: tombstone("k", ver(6, 1)),
		},
		{
			name:   "newer delete replaces a value",
			before: []kv.Entry{value("k", ver(5, 1), "old")},
			fill:   tombstone("k", ver(6, 1)), wantStore: true,
			want: tombstone("k", ver(6, 1)),
		},
		{
			name:   "newer put replaces a tombstone",
			before: []kv.Entry{tombstone("k", ver(6, 1))},
			fill:   value("k", ver(7, 1), "back"), wantStore: true,
			want: value("k", ver(7, 1), "back"),
		},
		{
			name:      "tombstone drops the value it was given",
			fill:      kv.Entry{Key: "k", Value: "ignored", Version: ver(5, 1), Deleted: true},
			wantStore: true,
			want:      tombstone("k", ver(5, 1)),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := testContext(t)
			c, _, _ := newCache(t, nil)
			for _, e := range tt.before {
				mustFill(t, ctx, c, e)
			}
			if got := mustFill(t, ctx, c, tt.fill); got != tt.wantStore {
				t.Errorf("Fill(%+v) stored = %v, want %v", tt.fill, got, tt.wantStore)
			}
			got, ok := mustGet(t, ctx, c, tt.fill.Key)
			if !ok || !sameEntry(got, tt.want) {
				t.Errorf("after Fill: Get = %+v (hit %v), want %+v", got, ok, tt.want)
			}
		})
	}
}

// countHook counts the round trips that run or load the CAS script; it
// ignores the handshakes of new connections.
type countHook struct{ single, pipelines atomic.Int64 }

func (h *countHook) DialHook(next goredis.DialHook) goredis.DialHook { return next }

func (h *countHook) ProcessHook(next goredis.ProcessHook) goredis.ProcessHook {
	return func(ctx context.Context, cmd goredis.Cmder) error {
		if isScript(cmd) {
			h.single.Add(1)
		}
		return next(ctx, cmd)
	}
}

func (h *countHook) ProcessPipelineHook(next goredis.ProcessPipelineHook) goredis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []goredis.Cmder) error {
		if slices.ContainsFunc(cmds, isScript) {
			h.pipelines.Add(1)
		}
		return next(ctx, cmds)
	}
}

func isScript(cmd goredis.Cmder) bool {
	switch cmd.Name() {
	case "evalsha", "eval", "script":
		return true
	}
	return false
}

func TestApply(t *testing.T) {
	ctx := testContext(t)
	c, client, _ := newCache(t, nil)

	const n = 500
	keys := make([]string, n)
	for i := range keys {
		keys[i] = "key:" + strings.Repeat("x", i%7) + ":" + strconv.Itoa(i)
	}
	// Every third key already holds a version newer than the batch's.
	for i := 0; i < n; i += 3 {
		mustFill(t, ctx, c, value(keys[i], ver(100, 0), "cached-newer"))
	}
	var batch []kv.Entry
	want := make(map[string]kv.Entry, n)
	for i, k := range keys {
		switch i % 4 {
		case 0: // two versions of the key in one batch, newest first
			batch = append(batch, value(k, ver(50, 2), "v50"), value(k, ver(40, 1), "v40"))
			want[k] = value(k, ver(50, 2), "v50")
		case 1:
			batch = append(batch, tombstone(k, ver(50, 1)))
			want[k] = tombstone(k, ver(50, 1))
		default:
			batch = append(batch, value(k, ver(50, 1), "v50-"+k))
			want[k] = value(k, ver(50, 1), "v50-"+k)
		}
		if i%3 == 0 {
			want[k] = value(k, ver(100, 0), "cached-newer")
		}
	}

	hook := &countHook{}
	client.AddHook(hook)
	if err := c.Apply(ctx, batch); err != nil {
		t.Fatalf("Apply(%d entries): %v", len(batch), err)
	}
	if got, want := hook.pipelines.Load(), int64(1); got != want {
		t.Errorf("Apply made %d pipelined round trips, want %d", got, want)
	}
	if got := hook.single.Load(); got != 0 {
		t.Errorf("Apply made %d single-command round trips, want 0", got)
	}
	for _, k := range keys {
		got, ok := mustGet(t, ctx, c, k)
		if !ok || !sameEntry(got, want[k]) {
			t.Errorf("Get(%q) = %+v (hit %v), want %+v", k, got, ok, want[k])
		}
	}

	hook.pipelines.Store(0)
	hook.single.Store(0)
	if err := c.Apply(ctx, nil); err != nil {
		t.Errorf("Apply(nil) = %v, want nil", err)
	}
	if got := hook.pipelines.Load() + hook.single.Load(); got != 0 {
		t.Errorf("Apply(nil) made %d round trips, want 0", got)
	}
}

// After a restart or SCRIPT FLUSH the script's digest is unknown: Fill falls
// back to EVAL, Apply reloads the script and runs the batch again.
func TestScriptReload(t *testing.T) {
	ctx := testContext(t)
	c, client, _ := newCache(t, nil)

	for _, step := range []struct {
		name string
		run  func() error
		key  string
	}{
		{"Fill", func() error { _, err := c.Fill(ctx, value("f", ver(1, 1), "x")); return err }, "f"},
		{"Apply", func() error { return c.Apply(ctx, []kv.Entry{value("a", ver(1, 1), "x")}) }, "a"},
	} {
		t.Run(step.name, func(t *testing.T) {
			if err := client.ScriptFlush(ctx).Err(); err != nil {
				t.Fatalf("SCRIPT FLUSH: %v", err)
			}
			if err := step.run(); err != nil {
				t.Fatalf("%s after SCRIPT FLUSH: %v", step.name, err)
			}
			if _, ok := mustGet(t, ctx, c, step.key); !ok {
				t.Errorf("%s after SCRIPT FLUSH stored nothing", step.name)
			}
		})
	}
}

func TestTTL(t *testing.T) {
	const ttl, tombstoneTTL = time.Hour, time.Minute
	tests := []struct {
		name     string
		entries  []kv.Entry // written in order; the last decides the TTL
		viaApply bool
		min, max time.Duration
	}{
		{"fill value", []kv.Entry{value("k", ver(1, 1), "v")}, false, tombstoneTTL, ttl},
		{"fill tombstone", []kv.Entry{tombstone("k", ver(1, 1))}, false, 0, tombstoneTTL},
		{"apply value", []kv.Entry{value("k", ver(1, 1), "v")}, true, tombstoneTTL, ttl},
		{"apply tombstone", []kv.Entry{tombstone("k", ver(1, 1))}, true, 0, tombstoneTTL},
		{"value over tombstone", []kv.Entry{tombstone("k", ver(1, 1)), value("k", ver(2, 1), "v")}, false, tombstoneTTL, ttl},
		{"tombstone over value", []kv.Entry{value("k", ver(1, 1), "v"), tombstone("k", ver(2, 1))}, true, 0, tombstoneTTL},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := testContext(t)
			c, client, cfg := newCache(t, func(cfg *redis.Config) {
				cfg.TTL, cfg.TombstoneTTL = ttl, tombstoneTTL
			})
			for _, e := range tt.entries {
				if tt.viaApply {
					if err := c.Apply(ctx, []kv.Entry{e}); err != nil {
						t.Fatalf("Apply: %v", err)
					}
				} else {
					mustFill(t, ctx, c, e)
				}
			}
			got, err := client.PTTL(ctx, cfg.KeyPrefix+"k").Result()
			if err != nil {
				t.Fatalf("PTTL: %v", err)
			}
			if got <= tt.min || got > tt.max {
				t.Errorf("PTTL = %v, want in (%v, %v]", got, tt.min, tt.max)
			}
		})
	}
}

func TestRoundTrip(t *testing.T) {
	tests := []struct{ name, key, value string }{
		{"utf-8", "ключ-キー-🔑", "значение 値 ✓ 🚀 \u00e9\u0301"},
		{"empty value", "empty", ""},
		{"colons in key", "a:b::c:", "x"},
		{"glob characters in key", "*?[a-z]\\*", "y"},
		{"only a star", "*", "z"},
		{"json-looking value", "j", `{"v":"1","d":"0","val":"\n\t"}`},
		{"multi-line value", "m", "line 1\r\nline 2\n\x7f"},
		{"large value", "big", strings.Repeat("é…", 256<<10/5)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := testContext(t)
			c, _, _ := newCache(t, nil)
			want := value(tt.key, ver(1, 1), tt.value)
			mustFill(t, ctx, c, want)
			got, ok := mustGet(t, ctx, c, tt.key)
			if !ok || !sameEntry(got, want) {
				t.Fatalf("after Fill: Get(%q) = %q (hit %v), want %q", tt.key, got.Value, ok, tt.value)
			}
			want = value(tt.key, ver(2, 1), tt.value+"!")
			if err := c.Apply(ctx, []kv.Entry{want}); err != nil {
				t.Fatalf("Apply: %v", err)
			}
			got, ok = mustGet(t, ctx, c, tt.key)
			if !ok || !sameEntry(got, want) {
				t.Errorf("after Apply: Get(%q) = %q (hit %v), want %q", tt.key, got.Value, ok, want.Value)
			}
		})
	}
}
