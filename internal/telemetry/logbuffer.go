package telemetry

import (
	"io"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// LogBuffer is a log's writer that gathers whole lines and writes them in
// one write(2) every interval, or as soon as size bytes have gathered,
// instead of one per line: the API writes a line per request (the access
// log), and a write per line was a system call per request
// (lab/bench/NOTES.md). Warnings and worse are written at once, after what is
// gathered, so that the order holds and a failure shows without delay;
// Close writes the rest. A crash may lose at most one interval of info
// lines. It is safe for concurrent use.
type LogBuffer struct {
	mu   sync.Mutex
	w    io.Writer
	buf  []byte
	size int
	stop chan struct{}
	done chan struct{}
}

var _ zerolog.LevelWriter = (*LogBuffer)(nil)

// NewLogBuffer starts a buffer in front of w, flushed every interval.
func NewLogBuffer(w io.Writer, interval time.Duration, size int) *LogBuffer {
	b := &LogBuffer{w: w, buf: make([]byte, 0, size), size: size, stop: make(chan struct{}), done: make(chan struct{})}
	go b.flushEvery(interval)
	return b
}

func (b *LogBuffer) flushEvery(interval time.Duration) {
	defer close(b.done)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			_ = b.Flush()
		case <-b.stop:
			return
		}
	}
}

// Write gathers p, a whole line, writing what was gathered first if p
// would not fit.
func (b *LogBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.buf)+len(p) > b.size {
		if err := b.flushLocked(); err != nil {
			return 0, err
		}
		if len(p) > b.size {
			return b.w.Write(p)
		}
	}
	b.buf = append(b.buf, p...)
	return len(p), nil
}

// WriteLevel writes warnings and worse at once, the rest as Write does.
func (b *LogBuffer) WriteLevel(l zerolog.Level, p []byte) (int, error) {
	if l < zerolog.WarnLevel || l == zerolog.NoLevel {
		return b.Write(p)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.flushLocked(); err != nil {
		return 0, err
	}
	return b.w.Write(p)
}

// Flush writes what was gathered.
func (b *LogBuffer) Flush() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.flushLocked()
}

func (b *LogBuffer) flushLocked() error {
	if len(b.buf) == 0 {
		return nil
	}
	_, err := b.w.Write(b.buf)
	b.buf = b.buf[:0]
	return err
}

// Close stops the timer and writes the rest; the buffer then writes each
// line at once.
func (b *LogBuffer) Close() error {
	b.mu.Lock()
	select {
	case <-b.stop:
	default:
		close(b.stop)
	}
	b.size = 0 // from now on, every Write goes straight through
	err := b.flushLocked()
	b.mu.Unlock()
	<-b.done
	return err
}
