package config

import (
	"os"
	"regexp"
	"strings"
	"testing"
	"time"
)

// The edge must let a wait finish: nginx's read timeout on the locations
// that carry waiting requests exceeds the longest wait the API allows
// (KV_WAIT_MAX), plus the publish for a write (RABBITMQ_PUBLISH_TIMEOUT),
// so that the API's own answer (200, 202, 504) reaches the client rather
// than nginx's 504 for a write that was published all the same.
func TestEdgeLetsTheLongestWaitFinish(t *testing.T) {
	conf, err := os.ReadFile("../../nginx/nginx.conf.template")
	if err != nil {
		t.Fatal(err)
	}
	cfg := mustLoadAPI(t)
	for _, tc := range []struct {
		location string
		need     time.Duration
	}{
		{"@api_read_wait", cfg.Wait.Max},
		{"@api_write_wait", cfg.Wait.Max + cfg.RabbitMQ.PublishTimeout},
	} {
		got := readTimeout(t, string(conf), tc.location)
		if got <= tc.need {
			t.Errorf("nginx %s: proxy_read_timeout %s, want more than the %s a wait may take", tc.location, got, tc.need)
		}
	}
}

func mustLoadAPI(t *testing.T) API {
	t.Helper()
	cfg, err := LoadFrom[API](map[string]string{})
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// readTimeout is the proxy_read_timeout set in a location's block.
func readTimeout(t *testing.T, conf, location string) time.Duration {
	t.Helper()
	_, block, ok := strings.Cut(conf, "location "+location+" {")
	if !ok {
		t.Fatalf("nginx: no location %s", location)
	}
	block, _, _ = strings.Cut(block, "}")
	m := regexp.MustCompile(`proxy_read_timeout\s+(\d+)s;`).FindStringSubmatch(block)
	if m == nil {
		t.Fatalf("nginx %s: no proxy_read_timeout in seconds", location)
	}
	d, err := time.ParseDuration(m[1] + "s")
	if err != nil {
		t.Fatal(err)
	}
	return d
}
