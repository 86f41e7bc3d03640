//go:build e2e

package e2e

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	amqp "github.com/rabbitmq/amqp091-go"
)

// Least privilege (docs/SECURITY.md): each process's credentials allow
// what it does and nothing more. Each case connects with the credentials
// the stack gives that process.

// The replicas' and the consumer's PostgreSQL role cannot change the
// schema; the exporter's cannot read kvstack's tables; PUBLIC cannot
// connect to the database.
func TestPostgresRolesHoldLeastPrivilege(t *testing.T) {
	env := loadStackEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	connect := func(what, url string) *pgx.Conn {
		t.Helper()
		conn, err := pgx.Connect(ctx, url)
		if err != nil {
			t.Fatalf("connect as %s: %v", what, err)
		}
		t.Cleanup(func() { conn.Close(context.Background()) })
		return conn
	}
	refused := func(conn *pgx.Conn, what, sql string) {
		t.Helper()
		_, err := conn.Exec(ctx, sql)
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "42501" { // insufficient_privilege
			t.Errorf("as %s: %s: %v, want insufficient_privilege (42501)", what, sql, err)
		}
	}
	app := connect("the app (KV_APP_DATABASE_URL)", env.s.Get("KV_APP_DATABASE_URL"))
	// What it must do still works.
	var n int64
	if err := app.QueryRow(ctx, "SELECT count(*) FROM kv_store").Scan(&n); err != nil {
		t.Errorf("the app's role reads kv_store: %v", err)
	}
	for _, sql := range []string{"CREATE TABLE kv_e2e_privilege (k text)", "TRUNCATE kv_store", "ALTER TABLE kv_store ADD COLUMN x text",
		"UPDATE kv_settings SET value = value"} {
		refused(app, "the app", sql)
	}
	monitor := connect("the exporter (POSTGRES_EXPORTER_DSN)", env.s.Get("POSTGRES_EXPORTER_DSN"))
	for _, sql := range []string{"SELECT count(*) FROM kv_store", "SELECT value FROM kv_settings"} {
		refused(monitor, "the exporter", sql)
	}
	// It still sees the statistics it exports.
	if err := monitor.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'").Scan(&n); err != nil {
		t.Errorf("the exporter's role reads pg_stat_activity: %v", err)
	}
	var publicConnect bool
	if err := app.QueryRow(ctx, "SELECT has_database_privilege('public', current_database(), 'CONNECT')").Scan(&publicConnect); err != nil || publicConnect {
		t.Errorf("PUBLIC may connect to the database: %v (%v), want revoked", publicConnect, err)
	}
}

// The replicas' RabbitMQ user may publish and nothing else: it cannot
// consume a work queue, nor delete one. The consumers' may consume and
// nothing else: it cannot publish to a work queue.
func TestRabbitMQUsersHoldLeastPrivilege(t *testing.T) {
	env := loadStackEnv(t)
	add, _ := env.s.WorkQueues()
	dial := func(what, urls string) *amqp.Channel {
		t.Helper()
		url, _, _ := strings.Cut(urls, ",")
		conn, err := env.dialAMQP(url)
		if err != nil {
			t.Fatalf("connect as %s: %v", what, err)
		}
		t.Cleanup(func() { conn.Close() })
		ch, err := conn.Channel()
		if err != nil {
			t.Fatal(err)
		}
		return ch
	}
	refused := func(what string, err error) {
		t.Helper()
		var aerr *amqp.Error
		if !errors.As(err, &aerr) || aerr.Code != amqp.AccessRefused {
			t.Errorf("%s: %v, want ACCESS_REFUSED (403)", what, err)
		}
	}

	api := dial("the API (KV_API_RABBITMQ_URL)", env.s.Get("KV_API_RABBITMQ_URL"))
	deliveries, err := api.Consume(add, "e2e-privilege", false, false, false, false, nil)
	if err == nil {
		api.Cancel("e2e-privilege", false) // unacked: back on the queue at once
		for range deliveries {
		}
	}
	refused("the API's user consumes "+add, err)
	api = dial("the API (KV_API_RABBITMQ_URL)", env.s.Get("KV_API_RABBITMQ_URL"))
	// if-unused: were it allowed, the consumers' queue would still stay.
	_, err = api.QueueDelete(add, true, false, false)
	refused("the API's user deletes "+add, err)

	consumer := dial("the consumer (KV_CONSUMER_RABBITMQ_URL)", env.s.Get("KV_CONSUMER_RABBITMQ_URL"))
	if err := consumer.Confirm(false); err != nil {
		t.Fatal(err)
	}
	closed := consumer.NotifyClose(make(chan *amqp.Error, 1))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Unsigned: were it let through, the consumer would dead-letter it.
	confirm, err := consumer.PublishWithDeferredConfirmWithContext(ctx, "", add, false, false, amqp.Publishing{Body: []byte("e2e-privilege")})
	if err == nil {
		select {
		case e := <-closed:
			err = e
		case <-ctx.Done():
			err = ctx.Err()
		}
		if err == ctx.Err() && confirm != nil && confirm.Acked() {
			err = errors.New("published and confirmed")
		}
	}
	refused("the consumer's user publishes to "+add, err)
}
