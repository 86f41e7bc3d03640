package config

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

func TestDefaults(t *testing.T) {
	api, err := LoadFrom[API](map[string]string{})
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"api addr", api.Addr, "127.0.0.1:8081"},
		{"log level", api.LogLevel, "info"},
		{"max key", api.Limits.MaxKeyBytes, 512},
		{"max body", api.HTTP.MaxBodyBytes, int64(1 << 20)},
		{"queue add", api.RabbitMQ.QueueAdd, "add_key"},
		{"redis addr", api.Redis.Addr, "127.0.0.1:6379"},
		{"postgres url", api.Postgres.URL, "postgres://kvstack:kvstack@127.0.0.1:5432/kvstack?sslmode=disable"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	con, err := LoadFrom[Consumer](map[string]string{})
	if err != nil {
		t.Fatal(err)
	}
	if con.Consumer.TombstoneRetention != 7*24*time.Hour || con.Addr != "127.0.0.1:8090" {
		t.Errorf("consumer defaults = %+v", con)
	}
}

func TestOverridesAndErrors(t *testing.T) {
	cfg, err := LoadFrom[Consumer](map[string]string{"CONSUMER_BATCH_SIZE": "7", "KV_TOMBSTONE_RETENTION": "1h", "REDIS_KEY_PREFIX": "x:"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Consumer.BatchSize != 7 || cfg.Consumer.TombstoneRetention != time.Hour || cfg.Redis.KeyPrefix != "x:" {
		t.Fatalf("overrides not applied: %+v", cfg)
	}
	if _, err := LoadFrom[API](map[string]string{"KV_MAX_KEY_BYTES": "many"}); err == nil || !strings.Contains(err.Error(), "MaxKeyBytes") || !strings.Contains(err.Error(), "many") {
		t.Fatalf("bad number: err = %v, want one naming the setting and the bad value", err)
	}
}

func TestLoggedConfigMasksSecrets(t *testing.T) {
	cfg, err := LoadFrom[API](map[string]string{
		"DATABASE_URL":   "postgres://u:pg-secret@db:5432/kv",
		"REDIS_PASSWORD": "redis-secret",
		"RABBITMQ_URL":   "amqp://u:mq-secret@mq:5672/",
		"KV_TOKEN_KEY":   "token-secret-of-at-least-32-bytes,older-token-secret-of-32-bytes",
	})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	log := zerolog.New(&buf)
	log.Info().Object("config", cfg).Msg("start")
	for _, secret := range []string{"pg-secret", "redis-secret", "mq-secret", "token-secret"} {
		if strings.Contains(buf.String(), secret) {
			t.Errorf("logged config shows %q: %s", secret, buf.String())
		}
	}
	if !strings.Contains(buf.String(), "db:5432") {
		t.Errorf("logged config lost the non-secret parts: %s", buf.String())
	}
}

func TestVarsListsEveryVariableWithItsDefault(t *testing.T) {
	vars := map[string]Var{}
	for _, v := range Vars[Consumer]() {
		if _, dup := vars[v.Name]; dup {
			t.Errorf("%s listed twice", v.Name)
		}
		vars[v.Name] = v
	}
	for name, want := range map[string]string{
		"KV_CONSUMER_ADDR":    "127.0.0.1:8090",
		"CONSUMER_BATCH_SIZE": "100",
		"KV_READY_TIMEOUT":    "1s",
		"DATABASE_URL":        "postgres://kvstack:kvstack@127.0.0.1:5432/kvstack?sslmode=disable",
		"RABBITMQ_QUEUE_ADD":  "add_key",
		"REDIS_KEY_PREFIX":    "kv:",
	} {
		if got, ok := vars[name]; !ok || got.Default != want || !got.HasDefault {
			t.Errorf("%s = %+v, want default %q", name, got, want)
		}
	}
	if v, ok := vars["KV_INSTANCE_ID"]; !ok || v.HasDefault {
		t.Errorf("KV_INSTANCE_ID = %+v (listed %v), want it listed without a default", v, ok)
	}
	if _, ok := vars["KV_MAX_BODY_BYTES"]; ok {
		t.Errorf("the consumer lists KV_MAX_BODY_BYTES, which only the API reads")
	}
	var b strings.Builder
	writeVars(&b, []Var{{Name: "A", Default: "1", HasDefault: true}, {Name: "B"}})
	if got, want := b.String(), "A=1\nB=\n"; got != want {
		t.Errorf("writeVars = %q, want %q", got, want)
	}
}

// A stop must leave, after the drain delay, time for a publish in flight
// to get its answer.
func TestAPIValidate(t *testing.T) {
	for _, tt := range []struct {
		vars map[string]string
		ok   bool
	}{
		{map[string]string{}, true},
		{map[string]string{"KV_DRAIN_DELAY": "0s"}, true},
		{map[string]string{"KV_DRAIN_DELAY": "13s"}, false}, // 13s + 2s publish is not under 15s
		{map[string]string{"KV_DRAIN_DELAY": "13s", "KV_SHUTDOWN_TIMEOUT": "16s"}, true},
		{map[string]string{"KV_DRAIN_DELAY": "-1s"}, false},
		{map[string]string{"KV_READY_INTERVAL": "0s"}, false},
		{map[string]string{"KV_WAIT_TIMEOUT": "1m"}, false}, // above KV_WAIT_MAX
	} {
		cfg, err := LoadFrom[API](tt.vars)
		if err != nil {
			t.Fatal(err)
		}
		if err := cfg.Validate(); (err == nil) != tt.ok {
			t.Errorf("%v: Validate = %v, want ok %v", tt.vars, err, tt.ok)
		}
	}
}
