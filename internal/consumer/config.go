package consumer

import (
	"errors"
	"fmt"
	"time"

	"github.com/rs/zerolog"

	"github.com/kvstack/kvstack/internal/envdefault"
)

// Config is the consumer's own configuration, read from the environment;
// the defaults are the envDefault tags.
type Config struct {
	// BatchSize and BatchWait close a batch: whichever comes first of
	// BatchSize messages or BatchWait after the batch's first message.
	BatchSize int           `env:"CONSUMER_BATCH_SIZE" envDefault:"100"`
	BatchWait time.Duration `env:"CONSUMER_BATCH_WAIT" envDefault:"20ms"`
	// ShutdownGrace bounds how long a stopping consumer may take to finish
	// and settle the batch in hand.
	ShutdownGrace time.Duration `env:"CONSUMER_SHUTDOWN_GRACE" envDefault:"10s"`
	// CacheRepairInterval is how often cache writes that failed are tried
	// again.
	CacheRepairInterval time.Duration `env:"KV_CACHE_REPAIR_INTERVAL" envDefault:"1s"`
	// MasterCheckInterval is how often, on a Redis Cluster, the shards'
	// masters are checked against the ones that marked them (see
	// redis.Cache.CheckMasters). The API checks a shard's master itself
	// before it reads from it; this check also purges the shards no API
	// reads.
	MasterCheckInterval time.Duration `env:"KV_CACHE_MASTER_CHECK_INTERVAL" envDefault:"1s"`
	// TombstoneRetention must exceed the longest time an operation can
	// wait in the queue: an older put arriving after its tombstone was
	// purged would resurrect the key.
	TombstoneRetention time.Duration `env:"KV_TOMBSTONE_RETENTION" envDefault:"168h"`
	// PurgeInterval is how often the tombstones older than
	// TombstoneRetention are purged.
	PurgeInterval time.Duration `env:"KV_TOMBSTONE_PURGE_INTERVAL" envDefault:"10m"`
	// AcceptUnsigned applies a message without signature headers instead
	// of dead-lettering it: for the upgrade from APIs that did not sign,
	// while they still publish, and only then. A message that carries a
	// signature is checked all the same. The consumer warns at start and
	// counts every message it lets through so
	// (kvstack_consumer_unsigned_accepted_total).
	AcceptUnsigned bool `env:"KV_ACCEPT_UNSIGNED_MESSAGES" envDefault:"false"`
}

// DefaultConfig() is the configuration with every variable unset.
func DefaultConfig() Config { return envdefault.Of[Config]() }

// Validate reports every setting that cannot work.
func (c Config) Validate() error {
	var errs []error
	if c.BatchSize < 1 {
		errs = append(errs, fmt.Errorf("CONSUMER_BATCH_SIZE: %d, want ≥ 1", c.BatchSize))
	}
	if c.BatchWait < 0 {
		errs = append(errs, fmt.Errorf("CONSUMER_BATCH_WAIT: %s, want ≥ 0", c.BatchWait))
	}
	if c.ShutdownGrace < 0 {
		errs = append(errs, fmt.Errorf("CONSUMER_SHUTDOWN_GRACE: %s, want ≥ 0", c.ShutdownGrace))
	}
	for name, d := range map[string]time.Duration{
		"KV_CACHE_REPAIR_INTERVAL":       c.CacheRepairInterval,
		"KV_CACHE_MASTER_CHECK_INTERVAL": c.MasterCheckInterval,
		"KV_TOMBSTONE_RETENTION":         c.TombstoneRetention,
		"KV_TOMBSTONE_PURGE_INTERVAL":    c.PurgeInterval,
	} {
		if d <= 0 {
			errs = append(errs, fmt.Errorf("%s: %s, want > 0", name, d))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("consumer config: %w", err)
	}
	return nil
}

// MarshalZerologObject logs the configuration.
func (c Config) MarshalZerologObject(e *zerolog.Event) {
	e.Int("batch_size", c.BatchSize).Dur("batch_wait", c.BatchWait).
		Dur("shutdown_grace", c.ShutdownGrace).Dur("cache_repair_interval", c.CacheRepairInterval).
		Dur("cache_master_check_interval", c.MasterCheckInterval).
		Dur("tombstone_retention", c.TombstoneRetention).Dur("purge_interval", c.PurgeInterval).
		Bool("accept_unsigned_messages", c.AcceptUnsigned)
}
