package telemetry

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// writes records each write(2) the buffer makes.
type writes struct {
	mu    sync.Mutex
	calls []string
}

func (w *writes) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.calls = append(w.calls, string(p))
	return len(p), nil
}

func (w *writes) got() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.calls...)
}

func TestLogBufferGathersLines(t *testing.T) {
	var out writes
	b := NewLogBuffer(&out, time.Hour, 1024)
	log := zerolog.New(b)
	for range 3 {
		log.Info().Msg("request")
	}
	if got := out.got(); len(got) != 0 {
		t.Fatalf("info lines written before a flush: %q", got)
	}
	log.Warn().Msg("dependency unavailable")
	got := out.got()
	if len(got) != 2 || strings.Count(got[0], "request") != 3 || !strings.Contains(got[1], "dependency unavailable") {
		t.Fatalf("a warning should write the gathered lines, then itself, at once: %q", got)
	}
	log.Info().Msg("last")
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if got := out.got(); len(got) != 3 || !strings.Contains(got[2], "last") {
		t.Fatalf("Close should write the rest: %q", got)
	}
	log.Info().Msg("after close")
	if got := out.got(); len(got) != 4 {
		t.Fatalf("after Close each line goes straight through: %q", got)
	}
}

func TestLogBufferFlushesWhenFullAndOnTime(t *testing.T) {
	var out writes
	b := NewLogBuffer(&out, 20*time.Millisecond, 64)
	defer b.Close()
	line := []byte(strings.Repeat("x", 40) + "\n")
	_, _ = b.Write(line)
	_, _ = b.Write(line) // does not fit: the first goes out
	if got := out.got(); len(got) != 1 || got[0] != string(line) {
		t.Fatalf("a full buffer should be written before the next line: %q", got)
	}
	_, _ = b.Write(bytes.Repeat([]byte("y"), 100)) // larger than the buffer
	deadline := time.Now().Add(5 * time.Second)
	for len(out.got()) < 3 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if got := out.got(); len(got) != 3 || got[1] != string(line) || len(got[2]) != 100 {
		t.Fatalf("want the second line, then the long one: %q", got)
	}
	_, _ = b.Write(line)
	for len(out.got()) < 4 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if got := out.got(); len(got) != 4 {
		t.Fatalf("the timer should write a gathered line: %q", got)
	}
}
