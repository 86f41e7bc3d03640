package redis_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/caarlos0/env/v11"
	"github.com/rs/zerolog"

	"github.com/kvstack/kvstack/internal/redis"
)

func TestConfigFromEnvironment(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want func(*redis.Config)
	}{
		{name: "defaults", env: map[string]string{}, want: func(*redis.Config) {}},
		{
			name: "overrides",
			env: map[string]string{
				"REDIS_ADDR": "redis:6380", "REDIS_PASSWORD": "pw", "REDIS_DB": "3",
				"REDIS_KEY_PREFIX": "p:", "REDIS_TTL": "5m", "REDIS_TOMBSTONE_TTL": "30s",
				"REDIS_READ_TIMEOUT": "1s",
			},
			want: func(c *redis.Config) {
				c.Addr, c.Password, c.DB, c.KeyPrefix = "redis:6380", "pw", 3, "p:"
				c.TTL, c.TombstoneTTL, c.ReadTimeout = 5*time.Minute, 30*time.Second, time.Second
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := env.ParseAsWithOptions[redis.Config](env.Options{Environment: tt.env})
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			want := redis.DefaultConfig()
			tt.want(&want)
			if got != want {
				t.Errorf("config = %+v, want %+v", got, want)
			}
			if err := got.Validate(); err != nil {
				t.Errorf("Validate() = %v, want nil", err)
			}
		})
	}
}

func TestClusterAddresses(t *testing.T) {
	tests := []struct {
		addr    string
		cluster bool
		want    []string
		isClust bool
	}{
		{"127.0.0.1:6379", false, []string{"127.0.0.1:6379"}, false},
		{"127.0.0.1:6379", true, []string{"127.0.0.1:6379"}, true},
		{"a:7000, b:7001,,c:7002", false, []string{"a:7000", "b:7001", "c:7002"}, true},
		{"redis://a:7000", false, []string{"a:7000"}, false},
		{"rediss://a:7000,rediss://b:7001", false, []string{"a:7000", "b:7001"}, true},
	}
	for _, tt := range tests {
		c := redis.DefaultConfig()
		c.Addr, c.Cluster = tt.addr, tt.cluster
		if got := c.Addrs(); strings.Join(got, " ") != strings.Join(tt.want, " ") || c.IsCluster() != tt.isClust {
			t.Errorf("REDIS_ADDR %q cluster %v: Addrs %q IsCluster %v, want %q %v", tt.addr, tt.cluster, got, c.IsCluster(), tt.want, tt.isClust)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name   string
		adjust func(*redis.Config)
	}{
		{"empty address", func(c *redis.Config) { c.Addr = "" }},
		{"only commas", func(c *redis.Config) { c.Addr = " , " }},
		{"a database in a cluster", func(c *redis.Config) { c.Addr, c.DB = "a:7000,b:7001", 1 }},
		{"a database in a one-seed cluster", func(c *redis.Config) { c.Cluster, c.DB = true, 2 }},
		{"empty prefix", func(c *redis.Config) { c.KeyPrefix = "" }},
		{"a hash tag in a cluster's prefix", func(c *redis.Config) { c.Cluster, c.KeyPrefix = true, "{kv}:" }},
		{"zero TTL", func(c *redis.Config) { c.TTL = 0 }},
		{"sub-millisecond tombstone TTL", func(c *redis.Config) { c.TombstoneTTL = 999 * time.Microsecond }},
		{"TLS mixed with plain text", func(c *redis.Config) { c.Addr = "rediss://a:7000,b:7001" }},
		{"a CA file without TLS", func(c *redis.Config) { c.TLSCAFile = "/ca.pem" }},
		{"a server name without TLS", func(c *redis.Config) { c.TLSServerName = "cache" }},
		{"a URL with a password", func(c *redis.Config) { c.Addr = "rediss://:pw@a:7000" }},
		{"no port", func(c *redis.Config) { c.Addr = "rediss://a" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := redis.DefaultConfig()
			tt.adjust(&cfg)
			if err := cfg.Validate(); err == nil {
				t.Errorf("Validate() = nil, want an error")
			}
			if _, err := redis.NewClient(cfg, nil); err == nil {
				t.Errorf("NewClient accepted an invalid config")
			}
		})
	}
}

func TestUnreadableCAFile(t *testing.T) {
	cfg := redis.DefaultConfig()
	cfg.Addr, cfg.TLSCAFile = "rediss://a:7000", "/nonexistent/ca.pem"
	if _, err := redis.NewClient(cfg, nil); err == nil || !strings.Contains(err.Error(), "REDIS_TLS_CA_FILE") {
		t.Errorf("NewClient with an unreadable CA file: %v, want an error naming REDIS_TLS_CA_FILE", err)
	}
}

func TestPasswordMasked(t *testing.T) {
	cfg := redis.DefaultConfig()
	cfg.Password = "hunter2-secret"
	var logged bytes.Buffer
	logger := zerolog.New(&logged)
	logger.Info().Interface("redis", cfg).Msg("config")
	js, err := json.Marshal(cfg)
	if err != nil {
		t.Fatalf("json: %v", err)
	}
	for name, got := range map[string]string{
		"%v": fmt.Sprintf("%v", cfg), "%+v": fmt.Sprintf("%+v", cfg), "%#v": fmt.Sprintf("%#v", cfg),
		"%s": cfg.Password.String(), "json": string(js), "zerolog": logged.String(),
	} {
		if strings.Contains(got, "hunter2") {
			t.Errorf("%s shows the password: %s", name, got)
		}
		if !strings.Contains(got, "****") {
			t.Errorf("%s = %s, want the password shown masked", name, got)
		}
	}
}

func TestDriverLogger(t *testing.T) {
	var logged bytes.Buffer
	var driverLog interface { // what goredis.SetLogger takes
		Printf(ctx context.Context, format string, v ...any)
	} = redis.DriverLogger{Log: zerolog.New(&logged)}
	driverLog.Printf(context.Background(), "dial %s: %v", "127.0.0.1:1", "refused")
	var line map[string]any
	if err := json.Unmarshal(logged.Bytes(), &line); err != nil {
		t.Fatalf("log line %q is not JSON: %v", logged.String(), err)
	}
	if got, want := line["message"], "dial 127.0.0.1:1: refused"; got != want {
		t.Errorf("message = %v, want %q", got, want)
	}
	if got, want := line["level"], "warn"; got != want {
		t.Errorf("level = %v, want %q", got, want)
	}
}
