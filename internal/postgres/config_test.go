package postgres_test

import (
	"strings"
	"testing"

	"github.com/caarlos0/env/v11"

	"github.com/kvstack/kvstack/internal/postgres"
)

func TestConfigFromEnv(t *testing.T) {
	got, err := env.ParseAsWithOptions[postgres.Config](env.Options{Environment: map[string]string{
		"DATABASE_URL":         "postgres://u:p@db:5433/x",
		"PG_MAX_CONNS":         "32",
		"PG_STATEMENT_TIMEOUT": "2s",
	}})
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	if got.URL != "postgres://u:p@db:5433/x" || got.MaxConns != 32 || got.StatementTimeout.String() != "2s" {
		t.Errorf("parsed config: got %+v, want the URL, 32 conns and a 2s statement timeout", got)
	}
}

func TestRedactURL(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"url with password", "postgres://kvstack:s3cret@127.0.0.1:5432/kvstack?sslmode=disable",
			"postgres://kvstack:xxxxx@127.0.0.1:5432/kvstack?sslmode=disable"},
		{"url without password", "postgres://kvstack@db/kvstack", "postgres://kvstack@db/kvstack"},
		{"postgresql scheme", "postgresql://u:s3cret@db/x", "postgresql://u:xxxxx@db/x"},
		{"password in query", "postgres://u@db/x?password=s3cret&sslmode=disable",
			"postgres://u@db/x?password=xxxxx&sslmode=disable"},
		{"sslpassword in query", "postgres://u@db/x?sslpassword=s3cret", "postgres://u@db/x?sslpassword=xxxxx"},
		{"keyword/value", "host=db user=u password=s3cret dbname=x", "host=db user=u password=xxxxx dbname=x"},
		{"keyword/value quoted", "host=db password='s3 cret' dbname=x", "host=db password=xxxxx dbname=x"},
		{"unparsable url", "postgres://u:s3cret@db:port/x%zz", "postgres://(unparsable URL)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := postgres.RedactURL(tt.in)
			if got != tt.want {
				t.Errorf("RedactURL(%q): got %q, want %q", tt.in, got, tt.want)
			}
			if strings.Contains(got, "s3cret") || strings.Contains(got, "s3 cret") {
				t.Errorf("RedactURL(%q) = %q: leaks the password", tt.in, got)
			}
		})
	}
}

func TestConfigStringMasksPassword(t *testing.T) {
	cfg := postgres.DefaultConfig()
	cfg.URL = "postgres://kvstack:s3cret@db/kvstack"
	for name, s := range map[string]string{
		"String":   cfg.String(),
		"Redacted": cfg.Redacted().URL,
	} {
		if strings.Contains(s, "s3cret") {
			t.Errorf("%s: got %q, which leaks the password", name, s)
		}
		if !strings.Contains(s, "kvstack:xxxxx@db") {
			t.Errorf("%s: got %q, want the masked URL in it", name, s)
		}
	}
}
