package rabbitmq

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/kvstack/kvstack/internal/envdefault"
)

// Config is the RabbitMQ part of the configuration, read from the
// environment. The defaults are the envDefault tags below.
type Config struct {
	// URL is one broker, or the nodes of one cluster separated by commas:
	// connections go to the first that answers, and one that is lost moves
	// on to the next (see URLs).
	URL string `env:"RABBITMQ_URL" envDefault:"amqp://guest:guest@127.0.0.1:5672/"`
	// TLSCAFile is the PEM file of the certificate authorities that sign
	// the brokers' certificates, for amqps:// URLs (then every URL must be
	// one): each broker's certificate must chain to them and carry its
	// URL's host. Empty: the system's authorities, or the URL's cacertfile
	// parameter. It is read at every connection, so a renewed file is
	// picked up without a restart.
	TLSCAFile string `env:"RABBITMQ_TLS_CA_FILE"`
	// QueueAdd and QueueDel name the work queues of puts and deletes; each
	// has its dead-letter queue <name>.dlq, bound to the DLX exchange.
	QueueAdd string `env:"RABBITMQ_QUEUE_ADD" envDefault:"add_key"`
	QueueDel string `env:"RABBITMQ_QUEUE_DEL" envDefault:"del_key"`
	DLX      string `env:"RABBITMQ_DLX" envDefault:"kvstack.dlx"`
	// QueueType is the x-queue-type of the work queues and their DLQs:
	// quorum (replicated on a majority of a cluster's nodes before a
	// publish is confirmed; on one node, written and fsynced) or classic.
	// A queue that exists as the other type is converted by MigrateQueues
	// (cmd/migrate).
	QueueType string `env:"RABBITMQ_QUEUE_TYPE" envDefault:"quorum"`
	// QueueMaxLength and QueueMaxBytes bound each work queue, in messages
	// and in bytes of bodies (0: no bound); a publish past either is
	// refused, and the API answers 503 (see Topology). The defaults hold
	// about 80 s of the consumer's measured apply rate (12,400 msg/s,
	// lab/bench/REPORT.md) and 1 GiB: 4,096 values of the largest size
	// (KV_MAX_VALUE_BYTES). A queue declared with other bounds is declared
	// again by MigrateQueues (cmd/migrate).
	QueueMaxLength int   `env:"RABBITMQ_QUEUE_MAX_LENGTH" envDefault:"1000000"`
	QueueMaxBytes  int64 `env:"RABBITMQ_QUEUE_MAX_BYTES" envDefault:"1073741824"`

	// PublishChannels is the size of the publisher's pool of confirm-mode
	// channels on its one connection.
	PublishChannels int `env:"RABBITMQ_PUBLISH_CHANNELS" envDefault:"8"`
	// PublishTimeout bounds one Publish, from the call to the confirm.
	PublishTimeout time.Duration `env:"RABBITMQ_PUBLISH_TIMEOUT" envDefault:"2s"`

	// Prefetch is the consumer's QoS per queue; 0 means twice the batch
	// size, so that the next batch is already on the wire while one is
	// being handled.
	Prefetch int `env:"CONSUMER_PREFETCH" envDefault:"0"`
}

// DefaultConfig() is the configuration with every variable unset.
func DefaultConfig() Config { return envdefault.Of[Config]() }

// Validate reports the first setting that cannot work.
func (c Config) Validate() error {
	var errs []error
	for _, u := range c.URLs() {
		if p, err := url.Parse(u); err != nil || (p.Scheme != "amqp" && p.Scheme != "amqps") || p.Host == "" {
			errs = append(errs, fmt.Errorf("RABBITMQ_URL: %q is not an amqp:// or amqps:// URL", redact(u)))
		}
	}
	if c.TLSCAFile != "" {
		for _, u := range c.URLs() {
			if !strings.HasPrefix(u, "amqps://") {
				// A CA given for a plain-text broker would protect nothing.
				errs = append(errs, fmt.Errorf("RABBITMQ_TLS_CA_FILE is set, but %q is not amqps://", redact(u)))
			}
		}
	}
	if len(c.URLs()) == 0 {
		errs = append(errs, fmt.Errorf("RABBITMQ_URL: empty"))
	}
	for name, v := range map[string]string{"RABBITMQ_QUEUE_ADD": c.QueueAdd, "RABBITMQ_QUEUE_DEL": c.QueueDel, "RABBITMQ_DLX": c.DLX} {
		if v == "" {
			errs = append(errs, fmt.Errorf("%s: empty", name))
		}
	}
	if c.QueueAdd == c.QueueDel {
		errs = append(errs, fmt.Errorf("RABBITMQ_QUEUE_ADD and RABBITMQ_QUEUE_DEL: both %q", c.QueueAdd))
	}
	if c.QueueType != "quorum" && c.QueueType != "classic" {
		errs = append(errs, fmt.Errorf("RABBITMQ_QUEUE_TYPE: %q, want quorum or classic", c.QueueType))
	}
	if c.QueueMaxLength < 0 {
		errs = append(errs, fmt.Errorf("RABBITMQ_QUEUE_MAX_LENGTH: %d, want ≥ 0 (0: no bound)", c.QueueMaxLength))
	}
	if c.QueueMaxBytes < 0 {
		errs = append(errs, fmt.Errorf("RABBITMQ_QUEUE_MAX_BYTES: %d, want ≥ 0 (0: no bound)", c.QueueMaxBytes))
	}
	if c.PublishChannels < 1 {
		errs = append(errs, fmt.Errorf("RABBITMQ_PUBLISH_CHANNELS: %d, want ≥ 1", c.PublishChannels))
	}
	if c.PublishTimeout <= 0 {
		errs = append(errs, fmt.Errorf("RABBITMQ_PUBLISH_TIMEOUT: %s, want > 0", c.PublishTimeout))
	}
	if c.Prefetch < 0 || c.Prefetch > 65535 {
		errs = append(errs, fmt.Errorf("CONSUMER_PREFETCH: %d, want 0..65535", c.Prefetch))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("rabbitmq config: %w", err)
	}
	return nil
}

// PrefetchFor is the QoS a consumer of batches of batchSize asks for.
func (c Config) PrefetchFor(batchSize int) int {
	if c.Prefetch > 0 {
		return c.Prefetch
	}
	return min(2*batchSize, 65535)
}

// URLs lists the brokers of RABBITMQ_URL, in order.
func (c Config) URLs() []string {
	var urls []string
	for u := range strings.SplitSeq(c.URL, ",") {
		if u = strings.TrimSpace(u); u != "" {
			urls = append(urls, u)
		}
	}
	return urls
}

// RedactedURL is the URL, or the list, with passwords masked, for logs.
func (c Config) RedactedURL() string {
	urls := c.URLs()
	for i, u := range urls {
		urls[i] = redact(u)
	}
	return strings.Join(urls, ",")
}

func redact(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "<unparsable URL>"
	}
	return u.Redacted()
}

// MarshalZerologObject logs the configuration without the password.
func (c Config) MarshalZerologObject(e *zerolog.Event) {
	e.Str("url", c.RedactedURL()).Str("tls_ca_file", c.TLSCAFile).
		Str("queue_add", c.QueueAdd).Str("queue_del", c.QueueDel).
		Str("dlx", c.DLX).Str("queue_type", c.QueueType).
		Int("queue_max_length", c.QueueMaxLength).Int64("queue_max_bytes", c.QueueMaxBytes).
		Int("publish_channels", c.PublishChannels).Dur("publish_timeout", c.PublishTimeout).
		Int("prefetch", c.Prefetch)
}

// String is the configuration without the password.
func (c Config) String() string {
	return fmt.Sprintf("rabbitmq{url=%s tls_ca_file=%s add=%s del=%s dlx=%s type=%s max_length=%d max_bytes=%d channels=%d timeout=%s prefetch=%d}",
		c.RedactedURL(), c.TLSCAFile, c.QueueAdd, c.QueueDel, c.DLX, c.QueueType, c.QueueMaxLength, c.QueueMaxBytes,
		c.PublishChannels, c.PublishTimeout, c.Prefetch)
}

// Topology is the topology this configuration names.
func (c Config) Topology() Topology {
	return Topology{AddQueue: c.QueueAdd, DelQueue: c.QueueDel, DLX: c.DLX, QueueType: c.QueueType,
		MaxLength: c.QueueMaxLength, MaxBytes: c.QueueMaxBytes}
}
