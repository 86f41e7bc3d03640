package telemetry

import (
	"fmt"
	"io"
	"os"
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
// Close writes the rest. A crash loses what has gathered and is not
// written yet: at most an interval of info lines, or, while the reader of
// w is behind, up to maxPending × size bytes and the write under way. It
// is safe for concurrent use.
//
// The gathered lines are written by the buffer's own goroutine, outside the
// lock that Write takes: a process's stdout is usually a pipe (supervisord,
// docker, the kubelet's container runtime), and a write(2) into a full pipe
// waits until its reader catches up. Written under that lock, every request
// logging its line waited too (lab/bench/NOTES.md: the native stack's
// replicas against the same build writing to a file). Write waits only when
// the writer is so far behind that maxPending × size bytes have gathered, which
// bounds the memory a stalled reader can make the buffer hold.
type LogBuffer struct {
	w io.Writer

	mu      sync.Mutex
	taken   *sync.Cond // the writer took the gathered lines (mu)
	buf     []byte     // gathered lines (mu)
	size    int        // flush when this much has gathered; 0 once closed (mu)
	pending int        // Write waits while this much is gathered (mu)

	wmu   sync.Mutex // held across each write to w: one at a time, in order
	spare []byte     // the lines being written (wmu)

	kick chan struct{} // size bytes gathered: write them now
	stop chan struct{}
	done chan struct{}
}

var _ zerolog.LevelWriter = (*LogBuffer)(nil)

// maxPending is how many times size may gather while a write is under way
// before Write waits for it.
const maxPending = 8

// NewLogBuffer starts a buffer in front of w, flushed every interval.
func NewLogBuffer(w io.Writer, interval time.Duration, size int) *LogBuffer {
	b := &LogBuffer{
		w: w, buf: make([]byte, 0, size), spare: make([]byte, 0, size),
		size: size, pending: maxPending * size,
		kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}),
	}
	b.taken = sync.NewCond(&b.mu)
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
		case <-b.kick:
		case <-b.stop:
			return
		}
		if err := b.Flush(); err != nil {
			reportWriteError(err)
		}
	}
}

// reportWriteError tells of a write of gathered lines that failed, as
// zerolog tells of an event it could not write (its ErrorHandler, or
// stderr): Write returned long before, so no caller can.
func reportWriteError(err error) {
	if zerolog.ErrorHandler != nil {
		zerolog.ErrorHandler(err)
		return
	}
	fmt.Fprintf(os.Stderr, "zerolog: could not write event: %v\n", err)
}

// Write gathers p, a whole line; once size bytes have gathered, the
// buffer's goroutine writes them.
func (b *LogBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	for b.size > 0 && len(b.buf) >= b.pending {
		b.taken.Wait() // the reader of w is far behind: hold this line back
	}
	if b.size == 0 { // closed: straight through
		b.mu.Unlock()
		b.wmu.Lock()
		defer b.wmu.Unlock()
		return b.w.Write(p)
	}
	b.buf = append(b.buf, p...)
	full := len(b.buf) >= b.size
	b.mu.Unlock()
	if full {
		select {
		case b.kick <- struct{}{}:
		default: // a write is already asked for
		}
	}
	return len(p), nil
}

// WriteLevel writes warnings and worse at once, after what is gathered;
// the rest as Write does.
func (b *LogBuffer) WriteLevel(l zerolog.Level, p []byte) (int, error) {
	if l < zerolog.WarnLevel || l == zerolog.NoLevel {
		return b.Write(p)
	}
	b.wmu.Lock()
	defer b.wmu.Unlock()
	if err := b.flushLocked(); err != nil {
		return 0, err
	}
	return b.w.Write(p)
}

// Flush writes what was gathered.
func (b *LogBuffer) Flush() error {
	b.wmu.Lock()
	defer b.wmu.Unlock()
	return b.flushLocked()
}

// flushLocked takes the gathered lines, letting Write gather anew at once,
// and writes them; b.wmu is held.
func (b *LogBuffer) flushLocked() error {
	b.mu.Lock()
	b.buf, b.spare = b.spare[:0], b.buf
	b.taken.Broadcast()
	b.mu.Unlock()
	if len(b.spare) == 0 {
		return nil
	}
	_, err := b.w.Write(b.spare)
	b.spare = b.spare[:0]
	return err
}

// Close stops the timer and writes the rest; the buffer then writes each
// line at once.
func (b *LogBuffer) Close() error {
	b.wmu.Lock()
	b.mu.Lock()
	select {
	case <-b.stop:
	default:
		close(b.stop)
	}
	b.size = 0 // from now on, every Write goes straight through
	b.taken.Broadcast()
	b.mu.Unlock()
	err := b.flushLocked()
	b.wmu.Unlock()
	<-b.done
	return err
}
