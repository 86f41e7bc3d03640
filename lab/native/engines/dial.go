package engines

import (
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/kvstack/kvstack/lab/native"
)

// DialAMQP connects to url as the stack's binaries do: an amqps:// URL
// over TLS that trusts caFile alone (RABBITMQ_TLS_CA_FILE; the system's
// authorities when empty), an amqp:// one in plain text.
func DialAMQP(url, caFile string) (*amqp.Connection, error) {
	if caFile == "" {
		return amqp.Dial(url)
	}
	cfg, err := native.ClientTLS(caFile)
	if err != nil {
		return nil, err
	}
	return amqp.DialTLS(url, cfg)
}
