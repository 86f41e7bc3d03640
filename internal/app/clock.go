package app

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/kvstack/kvstack/internal/clock"
	"github.com/kvstack/kvstack/internal/postgres"
)

// startClock measures the process's clock against PostgreSQL's at once,
// so that an API never publishes before it knows, then every
// KV_CLOCK_CHECK_INTERVAL until the returned func is called; the offset
// is exported as kvstack_clock_offset_seconds.
func startClock(ctx context.Context, cfg clock.Config, store *postgres.Store, reg *prometheus.Registry, log zerolog.Logger) (*clock.Monitor, func(), error) {
	if err := cfg.Validate(); err != nil {
		return nil, nil, err
	}
	m := clock.NewMonitor(referenceClock(store), cfg, log)
	mctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	if _, err := m.Measure(mctx); err != nil {
		log.Warn().Err(err).Msg("clock not measured against PostgreSQL's yet")
	}
	cancel()
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "kvstack_clock_offset_seconds",
		Help: "PostgreSQL's clock minus this process's, as last measured; an API refuses writes (503 clock_skew) beyond half of KV_MAX_CLOCK_SKEW either way.",
	}, func() float64 { off, _ := m.Offset(); return off.Seconds() }))
	// On through the drain: writes still in flight are checked.
	rctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	wg.Go(func() { m.Run(rctx) })
	return m, func() { stop(); wg.Wait() }, nil
}

// referenceClock is PostgreSQL's clock. A variable only so that a test can
// skew it: the machine's clock is not the test's to move.
var referenceClock = func(store *postgres.Store) clock.Reference { return store.Now }
