package postgres

import (
	"context"
	"net"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgxlisten"
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
// pgxlisten reconnects it, reconnectDelay after a failure; every time it is
// listening again it tells the sink that news may have been lost meanwhile.
//
// It connects to the primary only, whatever the URL asks: NOTIFY is
// delivered on the server where the consumers commit, and a standby
// refuses LISTEN. With several hosts in DATABASE_URL it tries them in turn,
// as the pool does. A silent connection to a dead peer is found by TCP
// keepalives (keepAlive), which fail it within about 45 seconds.
type Listener struct {
	l         pgxlisten.Listener
	sink      NewsSink
	log       zerolog.Logger
	listening atomic.Bool
}

const reconnectDelay = 500 * time.Millisecond

var keepAlive = net.KeepAliveConfig{Enable: true, Idle: 30 * time.Second, Interval: 5 * time.Second, Count: 3}

// NewListener returns a listener on channel (Store.NewsChannel) of the
// database cfg names; Run starts it.
func NewListener(cfg Config, channel string, sink NewsSink, log zerolog.Logger) (*Listener, error) {
	pcfg, err := poolConfig(cfg)
	if err != nil {
		return nil, err
	}
	cc := pcfg.ConnConfig.Copy()
	cc.ValidateConnect = pgconn.ValidateConnectTargetSessionAttrsPrimary
	cc.RuntimeParams["application_name"] = "kvstack-listener"
	cc.DialFunc = (&net.Dialer{KeepAliveConfig: keepAlive}).DialContext
	l := &Listener{sink: sink, log: log.With().Str("component", "listener").Str("channel", channel).Logger()}
	l.l = pgxlisten.Listener{
		Connect:        func(ctx context.Context) (*pgx.Conn, error) { return pgx.ConnectConfig(ctx, cc) },
		LogError:       l.logError,
		ReconnectDelay: reconnectDelay,
	}
	l.l.Handle(channel, l)
	return l, nil
}

// Listening reports whether the listener is connected and listening.
func (l *Listener) Listening() bool { return l.listening.Load() }

// Run listens until ctx is done.
func (l *Listener) Run(ctx context.Context) {
	_ = l.l.Listen(ctx) // only ever ctx's error
	l.listening.Store(false)
}

// HandleBacklog is called by pgxlisten once it listens on a new connection.
func (l *Listener) HandleBacklog(context.Context, string, *pgx.Conn) error {
	l.listening.Store(true)
	l.log.Info().Msg("listening for news of applied versions")
	// Whatever was applied while nobody listened went unheard.
	l.sink.Lost()
	return nil
}

// logError is told why a connection ended (neither handler fails).
func (l *Listener) logError(ctx context.Context, err error) {
	l.listening.Store(false)
	if ctx.Err() == nil {
		l.log.Warn().Err(err).Dur("retry_in", reconnectDelay).Msg("not listening for news of applied versions; waits rest on polling until it is back")
	}
}

// HandleNotification passes on the news of one notification.
func (l *Listener) HandleNotification(_ context.Context, n *pgconn.Notification, _ *pgx.Conn) error {
	news, err := decodeNews(n.Payload)
	if err != nil {
		l.log.Warn().Err(err).Msg("ignoring a notification that is not news of applied versions")
		return nil
	}
	for _, item := range news {
		l.sink.Applied(item.Key, item.Version)
	}
	return nil
}
