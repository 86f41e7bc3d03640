package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/kvstack/kvstack/internal/kv"
	"github.com/kvstack/kvstack/internal/postgres"
)

func TestOpenUnreachable(t *testing.T) {
	cfg := postgres.DefaultConfig()
	cfg.URL = "postgres://kvstack:s3cret@127.0.0.1:1/kvstack?sslmode=disable"
	cfg.ConnectTimeout = 2 * time.Second
	cfg.MinConns = 0

	pool, err := postgres.Open(t.Context(), cfg)
	if err == nil {
		pool.Close()
		t.Fatal("Open on 127.0.0.1:1: got a pool, want an error")
	}
	if !errors.Is(err, kv.ErrUnavailable) {
		t.Errorf("Open error: got %v, want one wrapping kv.ErrUnavailable", err)
	}
	if msg := err.Error(); !strings.Contains(msg, "PostgreSQL") || strings.Contains(msg, "s3cret") {
		t.Errorf("Open error: got %q, want it to name PostgreSQL and hide the password", msg)
	}
}

func TestOpenRejectsBadURL(t *testing.T) {
	cfg := postgres.DefaultConfig()
	cfg.URL = "postgres://u:s3cret@db:notaport/x"
	pool, err := postgres.Open(t.Context(), cfg)
	if err == nil {
		pool.Close()
		t.Fatal("Open with a malformed URL: got a pool, want an error")
	}
	if strings.Contains(err.Error(), "s3cret") {
		t.Errorf("Open error: got %q, which leaks the password", err)
	}
}

// TestOpenTracesQueriesWithoutParameters: the spans carry the statement, so
// that a trace shows what ran, but never its arguments, which hold users'
// keys and values; a query is one span.
func TestOpenTracesQueriesWithoutParameters(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })

	cfg := postgres.DefaultConfig()
	if u := os.Getenv("DATABASE_URL"); u != "" {
		cfg.URL = u
	}
	cfg.MinConns, cfg.MaxConns = 0, 1 // one connection: the second query's statement is prepared
	pool, err := postgres.Open(t.Context(), cfg, postgres.WithTracerProvider(tp))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer pool.Close()

	// otelpgx records client spans only inside a recording parent span.
	ctx, parent := tp.Tracer("test").Start(t.Context(), "parent")
	const secret = "secret-value-0451"
	var got string
	err = pool.QueryRow(ctx, "SELECT $1::text", secret).Scan(&got)
	parent.End()
	if err != nil {
		t.Fatalf("query: %v", err)
	}

	var sawStatement bool
	for _, span := range rec.Ended() {
		for _, attr := range span.Attributes() {
			v := attr.Value.String()
			if strings.Contains(v, secret) {
				t.Errorf("span %q attribute %s = %q: leaks a query parameter", span.Name(), attr.Key, v)
			}
			if attr.Key == "db.query.text" && strings.Contains(v, "SELECT $1::text") {
				sawStatement = true
			}
		}
	}
	if !sawStatement {
		t.Errorf("spans: got none with db.query.text of the query among %d spans, want one", len(rec.Ended()))
	}
	// Once the connection has prepared the statement, a query is one
	// client span: none for taking a connection from the pool (issue 22:
	// it cost 18 % of a traced read and told nothing).
	seen := len(rec.Ended())
	ctx, parent = tp.Tracer("test").Start(t.Context(), "parent")
	err = pool.QueryRow(ctx, "SELECT $1::text", secret).Scan(&got)
	parent.End()
	if err != nil {
		t.Fatalf("query: %v", err)
	}
	var names []string
	for _, span := range rec.Ended()[seen:] {
		if span.Name() != "parent" {
			names = append(names, span.Name())
		}
	}
	if len(names) != 1 {
		t.Errorf("client spans of a prepared query: got %q, want one, the query's", names)
	}
	// The connection's details, as otelpgx reads them from a connection.
	cc := pool.Config().ConnConfig
	want := map[string]string{"db.system.name": "postgresql", "server.address": cc.Host, "server.port": fmt.Sprint(cc.Port),
		"user.name": cc.User, "db.namespace": cc.Database}
	for _, span := range rec.Ended()[seen:] {
		if span.Name() == "parent" {
			continue
		}
		got := map[string]string{}
		for _, a := range span.Attributes() {
			if _, ok := want[string(a.Key)]; ok {
				got[string(a.Key)] = a.Value.String()
			}
		}
		if !maps.Equal(got, want) {
			t.Errorf("span %q: connection attributes %v, want %v", span.Name(), got, want)
		}
	}
}

// TestOpenFindsALiveHostOfSeveral: a multi-host DATABASE_URL with
// target_session_attrs=read-write (how the API and consumer find the
// primary of a primary and its standby) skips a host that does not answer.
func TestOpenFindsALiveHostOfSeveral(t *testing.T) {
	cfg := postgres.DefaultConfig()
	if u := os.Getenv("DATABASE_URL"); u != "" {
		cfg.URL = u
	}
	u, err := url.Parse(cfg.URL)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("target_session_attrs", "read-write")
	u.RawQuery = q.Encode()
	u.Host = "127.0.0.1:1," + u.Host
	cfg.URL = u.String()
	cfg.MinConns = 0

	pool, err := postgres.Open(t.Context(), cfg)
	if err != nil {
		t.Fatalf("Open(%s): %v", cfg, err)
	}
	defer pool.Close()
	var readOnly string
	if err := pool.QueryRow(t.Context(), "SHOW transaction_read_only").Scan(&readOnly); err != nil || readOnly != "off" {
		t.Fatalf("transaction_read_only = %q, %v; want a writable session", readOnly, err)
	}
	if s := cfg.String(); strings.Contains(s, "kvstack:kvstack@") || !strings.Contains(s, "127.0.0.1:1,") {
		t.Errorf("String() = %s, want both hosts and no password", s)
	}
}
