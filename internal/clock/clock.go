// Package clock measures this process's clock against PostgreSQL's, the
// reference every kvstack process shares, so that a process whose clock is
// off knows it.
//
// Last writer wins by timestamp, and the timestamp is the API's clock: an
// API whose clock runs ahead writes versions that beat later writes (a
// year ahead, for a year), one whose clock runs behind writes versions
// that lose to earlier ones. So the API refuses to publish while its clock
// is known to be off by more than half of KV_MAX_CLOCK_SKEW, and the
// consumer dead-letters a message stamped more than KV_MAX_CLOCK_SKEW
// after PostgreSQL's now, whoever made it. Half, so that a message from an
// API that passed its check is never refused: its timestamp is at most
// half the skew ahead, plus the measurement's error (at most half a
// round trip).
package clock

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/kvstack/kvstack/internal/envdefault"
	"github.com/kvstack/kvstack/internal/kv"
)

// Config bounds the clocks.
type Config struct {
	// MaxSkew is how far in PostgreSQL's future a message's timestamp may
	// be before the consumer dead-letters it; an API refuses to publish
	// when its clock is off by more than half of it.
	MaxSkew time.Duration `env:"KV_MAX_CLOCK_SKEW" envDefault:"1m"`
	// CheckInterval is how often the clock is measured.
	CheckInterval time.Duration `env:"KV_CLOCK_CHECK_INTERVAL" envDefault:"10s"`
}

// DefaultConfig is the configuration with every variable unset.
func DefaultConfig() Config { return envdefault.Of[Config]() }

// Validate reports a setting that cannot work.
func (c Config) Validate() error {
	if c.MaxSkew < time.Second {
		return fmt.Errorf("KV_MAX_CLOCK_SKEW: %s, want at least 1s", c.MaxSkew)
	}
	if c.CheckInterval <= 0 {
		return fmt.Errorf("KV_CLOCK_CHECK_INTERVAL: %s, want > 0", c.CheckInterval)
	}
	return nil
}

// ErrSkewed is a clock known to be off by more than allowed. It wraps
// kv.ErrUnavailable: the API answers 503 while it lasts.
var ErrSkewed = fmt.Errorf("clock skewed: %w", kv.ErrUnavailable)

// Reference tells the reference clock's time: PostgreSQL's
// clock_timestamp() in production.
type Reference func(ctx context.Context) (time.Time, error)

// Monitor keeps the last measured offset of the local clock from the
// reference. It is safe for concurrent use.
type Monitor struct {
	ref Reference
	cfg Config
	log zerolog.Logger
	now func() time.Time

	offset atomic.Int64 // reference minus local, ns; valid once known
	known  atomic.Bool
}

// NewMonitor returns a monitor that has measured nothing yet.
func NewMonitor(ref Reference, cfg Config, log zerolog.Logger) *Monitor {
	return &Monitor{ref: ref, cfg: cfg, log: log.With().Str("component", "clock").Logger(), now: time.Now}
}

// Measure reads the reference once and keeps the offset: the reference's
// time minus the midpoint of the local times around the read.
func (m *Monitor) Measure(ctx context.Context) (time.Duration, error) {
	t0 := m.now()
	ref, err := m.ref(ctx)
	t1 := m.now()
	if err != nil {
		return 0, fmt.Errorf("clock: read the reference: %w", err)
	}
	off := ref.Sub(t0.Add(t1.Sub(t0) / 2))
	was := m.Skewed()
	m.offset.Store(int64(off))
	m.known.Store(true)
	switch skewed := m.Skewed(); {
	case skewed && !was:
		m.log.Error().Dur("offset", off).Dur("allowed", m.cfg.MaxSkew/2).
			Msg("this process's clock is off from PostgreSQL's by more than half of KV_MAX_CLOCK_SKEW: an API refuses writes (503 clock_skew) until it is fixed (NTP)")
	case !skewed && was:
		m.log.Info().Dur("offset", off).Msg("this process's clock agrees with PostgreSQL's again")
	}
	return off, nil
}

// Run measures every CheckInterval until ctx is done; a failed read keeps
// the last offset.
func (m *Monitor) Run(ctx context.Context) {
	t := time.NewTicker(m.cfg.CheckInterval)
	defer t.Stop()
	for {
		mctx, cancel := context.WithTimeout(ctx, m.cfg.CheckInterval)
		if _, err := m.Measure(mctx); err != nil && ctx.Err() == nil {
			m.log.Debug().Err(err).Msg("clock not measured")
		}
		cancel()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Offset is the last measured offset (the reference minus this clock),
// and whether one was measured.
func (m *Monitor) Offset() (time.Duration, bool) {
	return time.Duration(m.offset.Load()), m.known.Load()
}

// Skewed reports whether this clock is known to be off by more than half
// of MaxSkew.
func (m *Monitor) Skewed() bool {
	off, ok := m.Offset()
	return ok && (off > m.cfg.MaxSkew/2 || off < -m.cfg.MaxSkew/2)
}

// Check is nil unless the clock is known to be skewed; then it is a
// *SkewError.
func (m *Monitor) Check() error {
	if m.Skewed() {
		off, _ := m.Offset()
		return &SkewError{Ahead: -off, MaxSkew: m.cfg.MaxSkew}
	}
	return nil
}

// SkewError is a clock known to be off. It wraps ErrSkewed, and tells the
// operator what to do (health.Advice).
type SkewError struct {
	Ahead   time.Duration // this clock minus PostgreSQL's: negative when behind
	MaxSkew time.Duration
}

func (e *SkewError) Error() string {
	return fmt.Sprintf("%v: %s ahead of PostgreSQL's (negative: behind), more than half of KV_MAX_CLOCK_SKEW (%s) either way: %s",
		ErrSkewed, e.Ahead.Round(time.Millisecond), e.MaxSkew, e.Advice())
}

func (e *SkewError) Unwrap() error { return ErrSkewed }

// Advice says what to do.
func (e *SkewError) Advice() string {
	return "fix this host's time sync (NTP); an API refuses writes meanwhile"
}

// Now is the reference's time as this clock best knows it: the local time
// corrected by the last offset, or the local time before any measure.
func (m *Monitor) Now() time.Time {
	off, _ := m.Offset()
	return m.now().Add(off)
}
