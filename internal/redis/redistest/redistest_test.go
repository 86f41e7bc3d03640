package redistest_test

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"

	"go.uber.org/goleak"

	"github.com/kvstack/kvstack/internal/redis/redistest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestMustClientIsolatesAndCleans(t *testing.T) {
	if testing.Short() {
		t.Skip("needs Redis")
	}
	ctx := context.Background()
	var prefixes []string
	var leftover []string
	t.Run("first", func(t *testing.T) {
		client, cfg := redistest.MustClient(t)
		prefixes = append(prefixes, cfg.KeyPrefix)
		if err := client.Set(ctx, cfg.KeyPrefix+"k", "v", 0).Err(); err != nil {
			t.Fatalf("SET: %v", err)
		}
	})
	t.Run("second", func(t *testing.T) {
		client, cfg := redistest.MustClient(t)
		prefixes = append(prefixes, cfg.KeyPrefix)
		// The first test's keys are gone once it has ended.
		keys, err := client.Keys(ctx, prefixes[0]+"*").Result()
		if err != nil {
			t.Fatalf("KEYS: %v", err)
		}
		leftover = keys
	})
	if len(prefixes) != 2 || prefixes[0] == prefixes[1] {
		t.Fatalf("prefixes = %q, want two different ones", prefixes)
	}
	for _, p := range prefixes {
		if !strings.HasPrefix(p, "test:") || !strings.HasSuffix(p, ":") {
			t.Errorf("prefix %q, want test:<random>:", p)
		}
	}
	if len(leftover) != 0 {
		t.Errorf("keys left under %q after its test: %q", prefixes[0], leftover)
	}
}

// fakeTB records a fatal failure instead of failing the real test.
type fakeTB struct {
	testing.TB
	mu    sync.Mutex
	fatal string
}

func (f *fakeTB) Helper() {}

func (f *fakeTB) Fatalf(format string, args ...any) {
	f.mu.Lock()
	f.fatal = fmt.Sprintf(format, args...)
	f.mu.Unlock()
	runtime.Goexit()
}

func (f *fakeTB) Cleanup(func()) {}

func TestMustClientFailsWhenRedisIsDown(t *testing.T) {
	if testing.Short() {
		t.Skip("needs Redis")
	}
	t.Setenv("REDIS_ADDR", "127.0.0.1:1")
	tb := &fakeTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		redistest.MustClient(tb)
	}()
	<-done
	if !strings.Contains(tb.fatal, "Redis") || !strings.Contains(tb.fatal, "127.0.0.1:1") {
		t.Errorf("MustClient with Redis down: Fatalf(%q), want a message naming Redis and its address", tb.fatal)
	}
}
