// Package postgres is the PostgreSQL adapter: it opens the traced connection
// pool and implements the durable store of kvstack over the kv_store table
// (reads, the last-writer-wins batch apply, the tombstone purge). It
// translates driver errors into the sentinel errors of package kv.
package postgres

import (
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/kvstack/kvstack/internal/envdefault"
)

// Config sets up the connection pool. Zero durations and counts leave pgx's
// own defaults (or the URL's parameters) in force.
type Config struct {
	// URL is PostgreSQL's connection URL; several hosts (h1:5432,h2:5433)
	// with target_session_attrs=read-write find the primary among them.
	URL string `env:"DATABASE_URL" envDefault:"postgres://kvstack:kvstack@127.0.0.1:5432/kvstack?sslmode=disable"`
	// MaxConns caps the pool; a consumer applying batches needs few, the
	// API serves reads with at most this many concurrent queries.
	MaxConns int32 `env:"PG_MAX_CONNS" envDefault:"16"`
	// MinConns are kept open so that the first requests after idle time do
	// not pay for connection set-up.
	MinConns int32 `env:"PG_MIN_CONNS" envDefault:"2"`
	// ConnectTimeout bounds dialling and authenticating one connection.
	ConnectTimeout time.Duration `env:"PG_CONNECT_TIMEOUT" envDefault:"5s"`
	// StatementTimeout is PostgreSQL's statement_timeout for every session:
	// the server cancels a runaway statement even when the client's context
	// carries no deadline.
	StatementTimeout time.Duration `env:"PG_STATEMENT_TIMEOUT" envDefault:"10s"`
	// MaxConnLifetime recycles connections, so that a failover or a
	// rebalanced load balancer is picked up.
	MaxConnLifetime time.Duration `env:"PG_MAX_CONN_LIFETIME" envDefault:"30m"`
	// SSLMode, when set, replaces DATABASE_URL's sslmode: verify-full
	// encrypts every connection and checks the server's certificate
	// against PG_SSLROOTCERT and its name against the URL's host (each
	// host of a multi-host URL); disable, require and verify-ca as libpq
	// has them. Empty: the URL's own, else pgx's default (prefer).
	SSLMode string `env:"PG_SSLMODE"`
	// SSLRootCert, when set, replaces DATABASE_URL's sslrootcert: the PEM
	// file of the certificate authorities the server's certificate must
	// chain to (empty: the URL's, else the system's). It is read when the
	// pool (or the listener) is built.
	SSLRootCert string `env:"PG_SSLROOTCERT"`
}

// DefaultConfig() is Config with the defaults of its env tags.
func DefaultConfig() Config { return envdefault.Of[Config]() }

// String renders the config for start-up logs with the password masked.
func (c Config) String() string {
	return fmt.Sprintf("url=%s max_conns=%d min_conns=%d connect_timeout=%s statement_timeout=%s max_conn_lifetime=%s sslmode=%s sslrootcert=%s",
		RedactURL(c.URL), c.MaxConns, c.MinConns, c.ConnectTimeout, c.StatementTimeout, c.MaxConnLifetime, c.SSLMode, c.SSLRootCert)
}

// Redacted returns a copy safe to log or marshal whole: the URL's password
// is masked.
func (c Config) Redacted() Config {
	c.URL = RedactURL(c.URL)
	return c
}

// sslModes are libpq's, which pgx takes.
var sslModes = []string{"disable", "allow", "prefer", "require", "verify-ca", "verify-full"}

// ConnString is DATABASE_URL with PG_SSLMODE and PG_SSLROOTCERT in it, in
// place of the URL's own parameters of those names.
func (c Config) ConnString() (string, error) {
	if c.SSLMode != "" && !slices.Contains(sslModes, c.SSLMode) {
		return "", fmt.Errorf("PG_SSLMODE: %q, want one of %s", c.SSLMode, strings.Join(sslModes, ", "))
	}
	set := map[string]string{}
	if c.SSLMode != "" {
		set["sslmode"] = c.SSLMode
	}
	if c.SSLRootCert != "" {
		set["sslrootcert"] = c.SSLRootCert
	}
	if len(set) == 0 {
		return c.URL, nil
	}
	if !strings.HasPrefix(c.URL, "postgres://") && !strings.HasPrefix(c.URL, "postgresql://") {
		// Keyword/value form: a later keyword wins over an earlier one.
		s := c.URL
		for _, k := range []string{"sslmode", "sslrootcert"} {
			if v, ok := set[k]; ok {
				s += " " + k + "='" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v) + "'"
			}
		}
		return s, nil
	}
	// pgx takes the first of a URL parameter given twice: replace it.
	u, err := url.Parse(c.URL)
	if err != nil {
		return "", fmt.Errorf("parse PostgreSQL URL %s: %w", RedactURL(c.URL), err)
	}
	q := u.Query()
	for k, v := range set {
		q.Set(k, v)
	}
	u.RawQuery = q.Encode()
	return u.String(), nil
}

const mask = "xxxxx"

var kvPassword = regexp.MustCompile(`(?i)\b(ssl)?password\s*=\s*('(?:[^'\\]|\\.)*'|\S+)`)

// RedactURL masks the password in a connection string, URL or keyword/value
// form, so that it can appear in logs and error messages.
func RedactURL(s string) string {
	if !strings.HasPrefix(s, "postgres://") && !strings.HasPrefix(s, "postgresql://") {
		return kvPassword.ReplaceAllString(s, "${1}password="+mask)
	}
	u, err := url.Parse(s)
	if err != nil {
		// Too malformed to find the password's boundaries: show nothing of it.
		return "postgres://(unparsable URL)"
	}
	if _, has := u.User.Password(); has {
		u.User = url.UserPassword(u.User.Username(), mask)
	}
	q := u.Query()
	changed := false
	for _, k := range []string{"password", "sslpassword"} {
		if q.Has(k) {
			q.Set(k, mask)
			changed = true
		}
	}
	if changed {
		u.RawQuery = q.Encode()
	}
	return u.String()
}
