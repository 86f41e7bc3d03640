package telemetry

import (
	"bytes"
	"errors"
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
	t.Run("full", func(t *testing.T) {
		var out writes
		b := NewLogBuffer(&out, time.Hour, 64) // no timer: only a full buffer writes
		defer b.Close()
		line := []byte(strings.Repeat("x", 40) + "\n")
		_, _ = b.Write(line)
		time.Sleep(20 * time.Millisecond)
		if got := out.got(); len(got) != 0 {
			t.Fatalf("a line written before the buffer was full: %q", got)
		}
		_, _ = b.Write(line) // 82 bytes gathered: full
		waitWrites(t, &out, 1)
		if got := out.got(); got[0] != string(line)+string(line) {
			t.Fatalf("a full buffer should be written in one write, its lines in order: %q", got)
		}
		_, _ = b.Write(bytes.Repeat([]byte("y"), 100)) // larger than the buffer
		waitWrites(t, &out, 2)
		if got := out.got(); len(got[1]) != 100 {
			t.Fatalf("want the long line: %q", got)
		}
	})
	t.Run("on time", func(t *testing.T) {
		var out writes
		b := NewLogBuffer(&out, 20*time.Millisecond, 64)
		defer b.Close()
		_, _ = b.Write([]byte("short\n"))
		waitWrites(t, &out, 1)
		if got := out.got(); got[0] != "short\n" {
			t.Fatalf("the timer should write a gathered line: %q", got)
		}
	})
}

// waitWrites waits up to 5 s for n writes to have reached out.
func waitWrites(t *testing.T, out *writes, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for len(out.got()) < n && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if got := out.got(); len(got) != n {
		t.Fatalf("want %d writes, got %d: %q", n, len(got), got)
	}
}

// stalled is a writer whose every Write waits until release is closed, as
// a write(2) into a pipe its reader does not drain.
type stalled struct {
	writes
	entered chan struct{}
	release chan struct{}
}

func (s *stalled) Write(p []byte) (int, error) {
	select {
	case s.entered <- struct{}{}:
	default:
	}
	<-s.release
	return s.writes.Write(p)
}

// A request's Write must not wait for a write(2) in progress: the native
// stack's replicas write their log into supervisord's pipe, and every
// request of a replica waited while that pipe was full.
func TestLogBufferWriteDoesNotWaitForTheWriter(t *testing.T) {
	out := &stalled{entered: make(chan struct{}, 1), release: make(chan struct{})}
	b := NewLogBuffer(out, time.Hour, 64)
	released := false
	release := func() {
		if !released {
			released = true
			close(out.release)
		}
	}
	defer func() { release(); _ = b.Close() }()
	line := []byte(strings.Repeat("x", 40) + "\n")
	go func() {
		_, _ = b.Write(line)
		_, _ = b.Write(line) // full: written now, and the write stalls
	}()
	select {
	case <-out.entered:
	case <-time.After(5 * time.Second):
		t.Fatal("a full buffer was never written")
	}
	wrote := make(chan struct{})
	go func() {
		_, _ = b.Write([]byte("next\n"))
		close(wrote)
	}()
	select {
	case <-wrote:
	case <-time.After(2 * time.Second):
		t.Fatal("Write waited for a write(2) in progress (a stalled stdout stalls every request that logs)")
	}
	release()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(out.got(), ""), string(line)+string(line)+"next\n"; got != want {
		t.Fatalf("written %q, want %q", got, want)
	}
}

// A stalled writer holds back Write once maxPending buffers have gathered:
// memory stays bounded, and nothing is lost.
func TestLogBufferBoundsWhatGathers(t *testing.T) {
	out := &stalled{entered: make(chan struct{}, 1), release: make(chan struct{})}
	b := NewLogBuffer(out, time.Hour, 64)
	line := []byte(strings.Repeat("z", 63) + "\n")
	_, _ = b.Write(line) // full: the writer takes it and stalls
	select {
	case <-out.entered:
	case <-time.After(5 * time.Second):
		t.Fatal("a full buffer was never written")
	}
	for range maxPending {
		_, _ = b.Write(line) // maxPending × 64 bytes gather
	}
	wrote := make(chan struct{})
	go func() {
		_, _ = b.Write(line)
		close(wrote)
	}()
	select {
	case <-wrote:
		t.Fatal("Write gathered past maxPending buffers while the writer was stalled")
	case <-time.After(100 * time.Millisecond):
	}
	close(out.release)
	select {
	case <-wrote:
	case <-time.After(5 * time.Second):
		t.Fatal("Write still held back after the writer caught up")
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if got, want := len(strings.Join(out.got(), "")), (maxPending+2)*len(line); got != want {
		t.Fatalf("written %d bytes, want %d", got, want)
	}
}

// failing is a writer whose every write fails.
type failing struct{}

func (failing) Write([]byte) (int, error) { return 0, errors.New("broken pipe") }

// A write of gathered lines that fails, by the buffer's goroutine, is told
// as zerolog tells of an event it could not write: Write returned before.
func TestLogBufferReportsAFailedWrite(t *testing.T) {
	reported := make(chan error, 1)
	old := zerolog.ErrorHandler
	zerolog.ErrorHandler = func(err error) {
		select {
		case reported <- err:
		default:
		}
	}
	defer func() { zerolog.ErrorHandler = old }()
	b := NewLogBuffer(failing{}, time.Hour, 8)
	defer func() { _ = b.Close() }()
	_, _ = b.Write([]byte("a full line\n")) // full: the goroutine writes it
	select {
	case err := <-reported:
		if !strings.Contains(err.Error(), "broken pipe") {
			t.Errorf("reported %v, want the write's error", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the failed write was never reported")
	}
}
