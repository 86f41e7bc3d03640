package postgres

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/rs/zerolog"

	"github.com/kvstack/kvstack/internal/kv"
)

// NewsSink is told the news a Listener hears.
type NewsSink interface {
	// Applied: key now holds version v.
	Applied(key string, v kv.Version)
	// Lost: news may have been missed (the listener was not listening for
	// a while); whoever waits should read the store.
	Lost()
}

// Listener holds one connection of its own, outside the pool, LISTENing on
// the schema's channel (news.go), and passes each item of news to its sink.
// It reconnects by itself; every time it is listening again it tells the
// sink that news may have been lost meanwhile.
//
// It connects to the primary only, whatever the URL asks: NOTIFY is
// delivered on the server where the consumers commit, and a standby
// refuses LISTEN. With several hosts in DATABASE_URL it tries them in turn,
// as the pool does.
type Listener struct {
	cfg  *pgx.ConnConfig
	sink NewsSink
	log  zerolog.Logger

	// idle is how long a silent connection is trusted before a ping.
	idle               time.Duration
	retryMin, retryMax time.Duration

	listening atomic.Bool
}

// NewListener returns a listener for the database cfg names; Run starts it.
func NewListener(cfg Config, sink NewsSink, log zerolog.Logger) (*Listener, error) {
	pcfg, err := poolConfig(cfg)
	if err != nil {
		return nil, err
	}
	cc := pcfg.ConnConfig.Copy()
	cc.ValidateConnect = pgconn.ValidateConnectTargetSessionAttrsPrimary
	cc.RuntimeParams["application_name"] = "kvstack-listener"
	return &Listener{
		cfg: cc, sink: sink, log: log.With().Str("component", "listener").Logger(),
		idle: 30 * time.Second, retryMin: 100 * time.Millisecond, retryMax: 5 * time.Second,
	}, nil
}

// Listening reports whether the listener is connected and listening.
func (l *Listener) Listening() bool { return l.listening.Load() }

// Run listens until ctx is done.
func (l *Listener) Run(ctx context.Context) {
	b := &backoff.ExponentialBackOff{InitialInterval: l.retryMin, MaxInterval: l.retryMax, Multiplier: 2, RandomizationFactor: 0.2}
	b.Reset()
	for {
		err := l.session(ctx, b)
		l.listening.Store(false)
		if ctx.Err() != nil {
			return
		}
		wait := b.NextBackOff()
		l.log.Warn().Err(err).Dur("retry_in", wait).Msg("not listening for news of applied versions; waits rest on polling until it is back")
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// session connects, listens and hands on news until the connection fails
// or ctx is done.
func (l *Listener) session(ctx context.Context, b *backoff.ExponentialBackOff) error {
	conn, err := pgx.ConnectConfig(ctx, l.cfg)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
		_ = conn.Close(cctx)
	}()
	var channel string
	if err := conn.QueryRow(ctx, "SELECT "+channelSQL).Scan(&channel); err != nil {
		return fmt.Errorf("channel name: %w", err)
	}
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{channel}.Sanitize()); err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	l.listening.Store(true)
	b.Reset()
	l.log.Info().Str("channel", channel).Msg("listening for news of applied versions")
	// Whatever was applied while nobody listened went unheard.
	l.sink.Lost()
	for {
		wctx, cancel := context.WithTimeout(ctx, l.idle)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		switch {
		case err == nil:
			l.deliver(n.Payload)
		case ctx.Err() != nil:
			return nil
		case pgconn.Timeout(err):
			// Silent for a while: make sure the connection still lives (a
			// dead peer may otherwise go unnoticed until TCP gives up).
			pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			err = conn.Ping(pctx)
			cancel()
			if err != nil {
				return fmt.Errorf("ping after %s without news: %w", l.idle, err)
			}
		default:
			return fmt.Errorf("wait for news: %w", err)
		}
	}
}

func (l *Listener) deliver(payload string) {
	news, err := decodeNews(payload)
	if err != nil {
		l.log.Warn().Err(err).Msg("ignoring a notification that is not news of applied versions")
		return
	}
	for _, n := range news {
		l.sink.Applied(n.Key, n.Version)
	}
}
