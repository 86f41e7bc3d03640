package engines

import (
	"errors"
	"fmt"
	"strings"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/kvstack/kvstack/internal/rabbitmq"
	"github.com/kvstack/kvstack/lab/native"
)

// DialAMQP connects to url as the stack's binaries do: an amqps:// URL
// over TLS that trusts caFile alone (RABBITMQ_TLS_CA_FILE; the system's
// authorities when empty), an amqp:// one in plain text. url may be a
// comma-separated list, as the HA topology's RABBITMQ_URL is (a node
// each): the first that answers is taken, as the binaries do.
func DialAMQP(url, caFile string) (*amqp.Connection, error) {
	var errs []error
	for u := range strings.SplitSeq(url, ",") {
		if u = strings.TrimSpace(u); u == "" {
			continue
		}
		conn, err := dialAMQP(u, caFile)
		if err == nil {
			return conn, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", rabbitmq.Config{URL: u}.RedactedURL(), err))
	}
	if len(errs) == 0 {
		return nil, errors.New("no RabbitMQ URL")
	}
	return nil, errors.Join(errs...)
}

func dialAMQP(url, caFile string) (*amqp.Connection, error) {
	if caFile == "" {
		return amqp.Dial(url)
	}
	cfg, err := native.ClientTLS(caFile)
	if err != nil {
		return nil, err
	}
	return amqp.DialTLS(url, cfg)
}
