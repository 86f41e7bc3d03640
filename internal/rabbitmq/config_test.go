package rabbitmq

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kvstack/kvstack/internal/kv"
)

func TestDefaultConfig(t *testing.T) {
	got := DefaultConfig()
	want := Config{
		URL: "amqp://guest:guest@127.0.0.1:5672/", QueueAdd: "add_key", QueueDel: "del_key",
		DLX: "kvstack.dlx", QueueType: "quorum", QueueMaxLength: 1_000_000, QueueMaxBytes: 1 << 30,
		PublishChannels: 8, PublishTimeout: 2 * time.Second,
	}
	if got != want {
		t.Errorf("DefaultConfig() = %+v, want %+v", got, want)
	}
	if err := got.Validate(); err != nil {
		t.Errorf("default config invalid: %v", err)
	}
	if got.PrefetchFor(100) != 200 {
		t.Errorf("PrefetchFor(100) = %d, want 200", got.PrefetchFor(100))
	}
	got.Prefetch = 7
	if got.PrefetchFor(100) != 7 {
		t.Errorf("PrefetchFor(100) with CONSUMER_PREFETCH=7 = %d, want 7", got.PrefetchFor(100))
	}
}

func TestConfigMasksPassword(t *testing.T) {
	cfg := DefaultConfig()
	cfg.URL = "amqp://kv:s3cret@mq.example:5672/prod"
	for name, s := range map[string]string{"RedactedURL": cfg.RedactedURL(), "String": cfg.String()} {
		if strings.Contains(s, "s3cret") {
			t.Errorf("%s leaks the password: %s", name, s)
		}
		if !strings.Contains(s, "kv:xxxxx@mq.example") {
			t.Errorf("%s = %s, want the user and host with a masked password", name, s)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name   string
		change func(*Config)
		want   string
	}{
		{"same queues", func(c *Config) { c.QueueDel = c.QueueAdd }, "RABBITMQ_QUEUE_DEL"},
		{"bad queue type", func(c *Config) { c.QueueType = "stream" }, "RABBITMQ_QUEUE_TYPE"},
		{"negative length bound", func(c *Config) { c.QueueMaxLength = -1 }, "RABBITMQ_QUEUE_MAX_LENGTH"},
		{"negative bytes bound", func(c *Config) { c.QueueMaxBytes = -1 }, "RABBITMQ_QUEUE_MAX_BYTES"},
		{"no channels", func(c *Config) { c.PublishChannels = 0 }, "RABBITMQ_PUBLISH_CHANNELS"},
		{"no timeout", func(c *Config) { c.PublishTimeout = 0 }, "RABBITMQ_PUBLISH_TIMEOUT"},
		{"huge prefetch", func(c *Config) { c.Prefetch = 70000 }, "CONSUMER_PREFETCH"},
		{"no broker", func(c *Config) { c.URL = " , " }, "RABBITMQ_URL"},
		{"not amqp", func(c *Config) { c.URL = "amqp://a:5672/,http://b:5672/" }, "RABBITMQ_URL"},
		{"a CA file for a plain-text broker", func(c *Config) { c.URL, c.TLSCAFile = "amqps://a:5671/,amqp://b:5672/", "/ca.pem" }, "RABBITMQ_TLS_CA_FILE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultConfig()
			tt.change(&cfg)
			err := cfg.Validate()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Validate() = %v, want an error naming %s", err, tt.want)
			}
		})
	}
}

func TestSeveralBrokers(t *testing.T) {
	cfg := DefaultConfig()
	cfg.URL = "amqp://kv:s3cret@mq1:5672/, amqp://kv:s3cret@mq2:5672/,,amqps://kv:s3cret@mq3:5671/"
	if err := cfg.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	want := []string{"amqp://kv:s3cret@mq1:5672/", "amqp://kv:s3cret@mq2:5672/", "amqps://kv:s3cret@mq3:5671/"}
	if got := cfg.URLs(); !slices.Equal(got, want) {
		t.Errorf("URLs() = %q, want %q", got, want)
	}
	if got := cfg.RedactedURL(); strings.Contains(got, "s3cret") || strings.Count(got, "kv:xxxxx@") != 3 {
		t.Errorf("RedactedURL() = %s, want every password masked", got)
	}
}

func TestTopologyQueueOf(t *testing.T) {
	topo := DefaultConfig().Topology()
	for _, tc := range []struct {
		kind kv.Kind
		want string
	}{{kv.KindPut, "add_key"}, {kv.KindDelete, "del_key"}} {
		got, err := topo.QueueOf(tc.kind)
		if err != nil || got != tc.want {
			t.Errorf("QueueOf(%s) = %q, %v; want %q", tc.kind, got, err, tc.want)
		}
	}
	if _, err := topo.QueueOf("upsert"); !errors.Is(err, kv.ErrInvalid) {
		t.Errorf("QueueOf(upsert) = %v, want kv.ErrInvalid", err)
	}
}
