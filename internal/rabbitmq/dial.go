package rabbitmq

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/cenkalti/backoff/v5"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/kvstack/kvstack/internal/tlsconf"
)

const (
	dialTimeout = 5 * time.Second
	heartbeat   = 10 * time.Second
)

// dialAny connects to the first of urls that answers, trying them in turn
// from urls[from], and returns the connection and the index of its URL, so
// that the next attempt after a lost connection starts with the node after
// it. caFile is RABBITMQ_TLS_CA_FILE.
func dialAny(urls []string, caFile string, from int, name string, writeTimeout time.Duration) (*amqp.Connection, int, error) {
	var errs []error
	for i := range urls {
		at := (from + i) % len(urls)
		conn, err := dial(urls[at], caFile, name, writeTimeout)
		if err == nil {
			return conn, at, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", redact(urls[at]), err))
	}
	return nil, from, errors.Join(errs...)
}

// dial opens one connection, named so that `rabbitmqctl list_connections
// client_properties` tells the API's from the consumer's. A writeTimeout > 0
// bounds every socket write: RabbitMQ throttles a publisher by not reading
// its socket, and without a deadline a publish would then block for as long
// as the broker likes; with it, the connection fails and is replaced.
//
// An amqps:// URL is dialled with TLS: with caFile set, the broker's
// certificate must chain to its authorities; the library checks the
// certificate's name against the URL's host. The file is read at each
// dial, so a renewed one is picked up at the next connection.
func dial(rawURL, caFile, name string, writeTimeout time.Duration) (*amqp.Connection, error) {
	props := amqp.NewConnectionProperties()
	props.SetClientConnectionName(name)
	var tlsConfig *tls.Config // nil: the library's (system roots, the URL's cacertfile)
	if caFile != "" {
		var err error
		if tlsConfig, err = tlsconf.Client(caFile, ""); err != nil {
			return nil, fmt.Errorf("RABBITMQ_TLS_CA_FILE: %w", err)
		}
	}
	return amqp.DialConfig(rawURL, amqp.Config{
		Heartbeat:       heartbeat,
		Locale:          "en_US",
		Properties:      props,
		TLSClientConfig: tlsConfig,
		Dial: func(network, addr string) (net.Conn, error) {
			conn, err := net.DialTimeout(network, addr, dialTimeout)
			if err != nil {
				return nil, err
			}
			// The handshake deadline, cleared by the library once open.
			if err := conn.SetDeadline(time.Now().Add(dialTimeout)); err != nil {
				conn.Close()
				return nil, err
			}
			if writeTimeout > 0 {
				return &deadlineConn{Conn: conn, timeout: writeTimeout}, nil
			}
			return conn, nil
		},
	})
}

// deadlineConn sets a fresh write deadline before each write. The library
// serialises writes on a connection, so the deadline is never shared.
type deadlineConn struct {
	net.Conn
	timeout time.Duration
}

func (c *deadlineConn) Write(p []byte) (int, error) {
	if err := c.Conn.SetWriteDeadline(time.Now().Add(c.timeout)); err != nil {
		return 0, err
	}
	return c.Conn.Write(p)
}

// newBackoff yields waits doubling from lo to hi, less or more up to 20%
// jitter, so that replicas restarted together do not reconnect in lockstep.
func newBackoff(lo, hi time.Duration) *backoff.ExponentialBackOff {
	b := &backoff.ExponentialBackOff{InitialInterval: lo, MaxInterval: hi, Multiplier: 2, RandomizationFactor: 0.2}
	b.Reset()
	return b
}

// sleep waits d, or less if done closes first; it reports whether it slept
// the whole time.
func sleep(done <-chan struct{}, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-done:
		return false
	}
}

// sleepCtx is sleep until ctx is done.
func sleepCtx(ctx context.Context, d time.Duration) bool { return sleep(ctx.Done(), d) }
