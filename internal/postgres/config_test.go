package postgres_test

import (
	"strings"
	"testing"

	"github.com/caarlos0/env/v11"
	"github.com/jackc/pgx/v5/pgconn"

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

func TestConnStringTakesTheTLSSettings(t *testing.T) {
	tests := []struct {
		name, url, mode, root, want string
	}{
		{"none set: the URL as it is", "postgres://u:p@db/x?sslmode=disable", "", "",
			"postgres://u:p@db/x?sslmode=disable"},
		{"replaces the URL's sslmode", "postgres://u:p@db/x?sslmode=disable", "verify-full", "/ca/root.crt",
			"postgres://u:p@db/x?sslmode=verify-full&sslrootcert=%2Fca%2Froot.crt"},
		{"multi-host URL", "postgres://u@h1:5432,h2:5433/x?target_session_attrs=read-write", "verify-full", "",
			"postgres://u@h1:5432,h2:5433/x?sslmode=verify-full&target_session_attrs=read-write"},
		{"keyword/value", "host=db sslmode=disable", "verify-full", "/ca/it's.crt",
			`host=db sslmode=disable sslmode='verify-full' sslrootcert='/ca/it\'s.crt'`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := postgres.Config{URL: tt.url, SSLMode: tt.mode, SSLRootCert: tt.root}
			got, err := cfg.ConnString()
			if err != nil || got != tt.want {
				t.Fatalf("ConnString: got %q, %v; want %q", got, err, tt.want)
			}
		})
	}
	if _, err := (postgres.Config{URL: "postgres://db/x", SSLMode: "verify_full"}).ConnString(); err == nil || !strings.Contains(err.Error(), "PG_SSLMODE") {
		t.Errorf("ConnString with PG_SSLMODE=verify_full: %v, want an error naming PG_SSLMODE", err)
	}
}

// TestTLSSettingsReachPgx: what pgx makes of the settings is a verified
// connection to the URL's host, with no plain-text fallback.
func TestTLSSettingsReachPgx(t *testing.T) {
	cfg := postgres.Config{URL: "host=db.example user=u dbname=x sslmode=disable", SSLMode: "verify-full"}
	conn, err := cfg.ConnString()
	if err != nil {
		t.Fatal(err)
	}
	pc, err := pgconn.ParseConfig(conn)
	if err != nil {
		t.Fatal(err)
	}
	if pc.TLSConfig == nil || pc.TLSConfig.InsecureSkipVerify || pc.TLSConfig.ServerName != "db.example" || len(pc.Fallbacks) != 0 {
		t.Errorf("pgx config from %q: TLS %+v, %d fallbacks; want a verified TLS config for db.example and no fallback", conn, pc.TLSConfig, len(pc.Fallbacks))
	}
}
