package app

import (
	"context"
	"fmt"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/kvstack/kvstack/internal/auth"
	"github.com/kvstack/kvstack/internal/clock"
	"github.com/kvstack/kvstack/internal/config"
	"github.com/kvstack/kvstack/internal/health"
	"github.com/kvstack/kvstack/internal/httpapi"
	"github.com/kvstack/kvstack/internal/kv"
	"github.com/kvstack/kvstack/internal/metrics"
	"github.com/kvstack/kvstack/internal/msgsig"
	"github.com/kvstack/kvstack/internal/notify"
	"github.com/kvstack/kvstack/internal/postgres"
	"github.com/kvstack/kvstack/internal/rabbitmq"
	"github.com/kvstack/kvstack/internal/token"
)

// RunAPI runs the HTTP API until ctx is done, then drains: /readyz turns
// 503 at once, the API serves on for KV_DRAIN_DELAY, then the waits are
// answered (as if their bound had passed), the server stops taking
// connections and the requests in flight finish, all within
// KV_SHUTDOWN_TIMEOUT; last, the publisher and the listener close.
//
// PostgreSQL must answer at start (it is the truth, and keeps the token
// key; a supervisor restarts the process). Redis and RabbitMQ need not:
// reads degrade to PostgreSQL and writes get 503 until they come. Later,
// an outage of any one dependency degrades what needs it and nothing else
// (apiCapabilities), which /readyz details.
func RunAPI(ctx context.Context, cfg config.API, log zerolog.Logger, ready Ready) error {
	log.Info().Object("config", cfg).Msg("starting kv-api")
	if err := cfg.Validate(); err != nil {
		return err
	}
	reg := metrics.New()
	// The key set and the policy first: a bad one stops the start at once.
	authn, err := auth.New(ctx, cfg.Auth, log, metrics.NewAuth(reg))
	if err != nil {
		return err
	}
	d, err := openData(ctx, cfg.Postgres, cfg.Redis, reg, counts{reads: metrics.NewCache(reg)}, log)
	if err != nil {
		return err
	}
	defer d.close()
	tokens, err := tokenCodec(ctx, cfg.Token, d.store)
	if err != nil {
		return err
	}

	keys, err := msgsig.ParseKeys(cfg.Messages.Keys)
	if err != nil {
		return err
	}
	pub, err := rabbitmq.NewPublisher(cfg.RabbitMQ, keys, log)
	if err != nil {
		return fmt.Errorf("rabbitmq: %w", err)
	}
	// Closed after the server has drained: in-flight PUTs still publish.
	defer pub.Close()
	// Give the broker a moment so that the first writes need not be refused;
	// past it, serve anyway: writes get 503 until the publisher connects.
	wctx, cancel := context.WithTimeout(ctx, cfg.RabbitMQ.PublishTimeout)
	if err := pub.WaitReady(wctx); err != nil {
		log.Warn().Err(err).Msg("RabbitMQ not reachable yet; writes get 503 until it is")
	}
	cancel()

	// Waits hear of applied versions from one listener, stopped after the
	// server has drained (waits in flight still hear their news).
	waiters, stopListening, err := listen(ctx, cfg, d.store.store, reg, log)
	if err != nil {
		return err
	}
	defer stopListening()

	metrics.RegisterQueueBound(reg, cfg.RabbitMQ.QueueMaxLength, cfg.RabbitMQ.QueueAdd, cfg.RabbitMQ.QueueDel)
	clk, stopClock, err := startClock(ctx, cfg.Clock, d.store.store, reg, log)
	if err != nil {
		return err
	}
	defer stopClock()
	mpub := clockGuard{
		measuredPublisher: measuredPublisher{pub: pub, m: metrics.NewPublish(reg, cfg.RabbitMQ.QueueAdd, cfg.RabbitMQ.QueueDel), topo: cfg.RabbitMQ.Topology()},
		clock:             clk,
	}
	svc := kv.NewService(d.store, d.cache, mpub, cfg.Limits, log, kv.WithWaiters(waiters, cfg.Wait))
	checks := append(dependencyChecks(d.store.Ping, d.cache.Ping, mpub.Ready),
		health.Check{Name: checkClock, Ping: func(context.Context) error { return clk.Check() }})
	readiness, stopChecking := monitor(ctx, cfg.Health, checks, apiCapabilities, reg, log)
	defer stopChecking()
	handler := httpapi.NewHandler(svc, tokens, authn, readiness, cfg.HTTP, log, metrics.NewHTTP(reg))
	stop := stopping{timeout: cfg.ShutdownTimeout, delay: cfg.DrainDelay, drain: readiness.Drain, closing: svc.EndWaits}
	admin, err := listenAdmin(cfg.AdminAddr, reg, log)
	if err != nil {
		return err
	}
	defer admin.close()
	return serve(ctx, cfg.Addr, handler, stop, admin.ready(ready), log)
}

// monitor checks the process's dependencies in the background until the
// returned func is called, and exports what it finds on reg.
func monitor(ctx context.Context, cfg health.Config, checks []health.Check, caps []health.Capability, reg *prometheus.Registry, log zerolog.Logger) (*health.Monitor, func()) {
	m := health.NewMonitor(cfg, checks, caps, log)
	metrics.RegisterHealth(reg, m.Report)
	// On through the drain: /readyz keeps its detail until the end.
	mctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	wg.Go(func() { m.Run(mctx) })
	return m, func() { cancel(); wg.Wait() }
}

// tokenCodec signs with KV_TOKEN_KEY when set, else with the key the
// migrations left in PostgreSQL, the same for every replica.
func tokenCodec(ctx context.Context, cfg token.Config, store measuredStore) (*token.Codec, error) {
	keys := token.ParseKeys(cfg.Key)
	if len(keys) == 0 {
		key, err := store.TokenKey(ctx)
		if err != nil {
			return nil, fmt.Errorf("postgres: %w (run the migrations, or set KV_TOKEN_KEY)", err)
		}
		keys = [][]byte{key}
	}
	c, err := token.New(keys...)
	if err != nil {
		return nil, fmt.Errorf("KV_TOKEN_KEY: %w", err)
	}
	return c, nil
}

// listen starts the process's listener, feeding a registry of waiters
// capped at KV_MAX_WAITERS (KV_MAX_WAITERS_PER_CLIENT for one client), and returns the waiters as the service sees
// them (measured) and a func that stops the listener.
func listen(ctx context.Context, cfg config.API, store *postgres.Store, reg *prometheus.Registry, log zerolog.Logger) (kv.Waiters, func(), error) {
	m := metrics.NewWait(reg)
	waiters := notify.NewRegistry(cfg.Wait.MaxWaiters, cfg.Wait.MaxWaitersPerClient)
	m.Waiters(waiters.Len)
	channel, err := store.NewsChannel(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("postgres: %w", err)
	}
	l, err := postgres.NewListener(cfg.Postgres, channel, measuredNews{reg: waiters, m: m}, log)
	if err != nil {
		return nil, nil, fmt.Errorf("postgres: %w", err)
	}
	m.Listening(l.Listening)
	lctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	wg.Go(func() { l.Run(lctx) })
	return measuredWaiters{reg: waiters, m: m}, func() { cancel(); wg.Wait() }, nil
}

// clockGuard refuses to publish while the API's clock is known to be off:
// last writer wins by its timestamps. /readyz shows it as the check
// "clock", which takes writes down (apiCapabilities).
type clockGuard struct {
	measuredPublisher
	clock *clock.Monitor
}

func (g clockGuard) Publish(ctx context.Context, op kv.Op) error {
	if err := g.clock.Check(); err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	return g.measuredPublisher.Publish(ctx, op)
}
