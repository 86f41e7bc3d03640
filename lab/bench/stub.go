package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	amqp "github.com/rabbitmq/amqp091-go"
	goredis "github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/kvstack/kvstack/internal/kv"
	"github.com/kvstack/kvstack/internal/postgres"
	kvredis "github.com/kvstack/kvstack/internal/redis"
)

// StubRedis, when Addr is set, makes the stub read Redis once per request.
type StubRedis struct {
	Addr, Username, Password string
	DB, PoolSize             int
	Key                      string   // a hash that exists
	Fields                   []string // read with one HMGET, as the API reads a cache entry
}

// StubAMQP, when Queue is set, makes the stub publish one confirmed
// message per request, as the API accepts a PUT.
type StubAMQP struct {
	URL, Queue string
	Channels   int           // confirm-mode channels on the one connection
	Timeout    time.Duration // bounds one publish, from the call to the confirm
	Size       int           // message body bytes
}

// StubMiss, when Postgres.URL is set, makes the stub answer a cache miss
// as the least cache-aside code can: one primary-key SELECT of the key
// (the request's ?key=), as the API's store reads it, then one fill of
// the cache with the entry (the cache's compare-and-set script), on a pool
// and a client of the API's sizes without tracing.
type StubMiss struct {
	Postgres postgres.Config
	Redis    kvredis.Config
}

// missStub answers with next after the read and the fill; a key without a
// row or a failed read is a 503, so that the load counts it as an error.
func missStub(ctx context.Context, sm StubMiss, next http.Handler) (http.Handler, func(), error) {
	conn, err := sm.Postgres.ConnString()
	if err != nil {
		return nil, nil, err
	}
	pc, err := pgxpool.ParseConfig(conn)
	if err != nil {
		return nil, nil, fmt.Errorf("postgres: %w", err)
	}
	pc.MaxConns = sm.Postgres.MaxConns
	// Its connections are closed a second or two after its run, not kept
	// idle for pgx's default half hour: on a PostgreSQL of 100 connections
	// (Debian's default, the shared one's) the stack's replicas' pools,
	// this one's and the harness's baseline, all kept, left none for the
	// next scenario's replicas (make bench failed to start the PUT's
	// variants, and the reference answered 503s). In a run they are busy.
	pc.MaxConnIdleTime, pc.HealthCheckPeriod = time.Second, time.Second
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, nil, fmt.Errorf("postgres: %w", err)
	}
	rc := sm.Redis
	rdb := stubRedisClient(StubRedis{Addr: rc.Addr, Username: rc.Username, Password: string(rc.Password), DB: rc.DB, PoolSize: rc.PoolSize})
	closeAll := func() { pool.Close(); rdb.Close() }
	if err := rdb.Ping(ctx).Err(); err != nil {
		closeAll()
		return nil, nil, fmt.Errorf("redis %s: %w", rc.Addr, err)
	}
	cache := kvredis.NewCache(rdb, rc, nil)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var (
			e     kv.Entry
			value *string
			ts    time.Time
			by    *string
		)
		err := pool.QueryRow(r.Context(), `SELECT key, value, last_updated, op_id, deleted, written_by FROM kv_store WHERE key = $1`, r.URL.Query().Get("key")).
			Scan(&e.Key, &value, &ts, &e.Version.OpID, &e.Deleted, &by)
		if err != nil {
			http.Error(w, `{"error":"unavailable"}`, http.StatusServiceUnavailable)
			return
		}
		if value != nil {
			e.Value = *value
		}
		e.Version.Time = kv.Timestamp(ts)
		if _, err := cache.Fill(r.Context(), e); err != nil {
			http.Error(w, `{"error":"unavailable"}`, http.StatusServiceUnavailable)
			return
		}
		next.ServeHTTP(w, r)
	}), closeAll, nil
}

// ServeStub is the baseline's upstream: the least a Go HTTP handler can do,
// answering every request with a JSON body of size bytes, on each address.
// With rs.Addr set it is the reference upstream instead: the same handler
// after one Redis read, the least a cache-aside GET can do; with ra.Queue
// set, the same handler answering 202 after one confirmed publish, the
// least an accept-after-confirm PUT can do; with sm.Postgres.URL set, the
// same handler after one SELECT and one cache fill, the least a cache-aside
// GET miss can do.
func ServeStub(ctx context.Context, addrs []string, size int, rs StubRedis, ra StubAMQP, sm StubMiss) error {
	body := stubBody(size)
	status := http.StatusOK
	if ra.Queue != "" {
		status = http.StatusAccepted // as the API accepts a PUT
	}
	var h http.Handler = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = w.Write(body)
	})
	if rs.Addr != "" {
		rdb := stubRedisClient(rs)
		defer rdb.Close()
		if err := rdb.Ping(ctx).Err(); err != nil {
			return fmt.Errorf("redis %s: %w", rs.Addr, err)
		}
		h = redisStub(rdb, rs, h)
	}
	if sm.Postgres.URL != "" {
		miss, closeMiss, err := missStub(ctx, sm, h)
		if err != nil {
			return err
		}
		defer closeMiss()
		h = miss
	}
	if ra.Queue != "" {
		pool, err := dialConfirmPool(ra)
		if err != nil {
			return err
		}
		defer pool.conn.Close()
		h = amqpStub(pool, ra, h)
	}
	errc := make(chan error, len(addrs))
	var srvs []*http.Server
	for _, a := range addrs {
		srv := &http.Server{Addr: a, Handler: h, ReadHeaderTimeout: 5 * time.Second}
		srvs = append(srvs, srv)
		go func() { errc <- srv.ListenAndServe() }()
	}
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	for _, s := range srvs {
		_ = s.Close()
	}
	return nil
}

// stubBody is a JSON body of exactly size bytes.
func stubBody(size int) []byte {
	return []byte(`{"v":"` + strings.Repeat("x", max(size-8, 0)) + `"}` + "\n")[:max(size, 0)]
}

// stubRedisClient is the API's client without its tracing: the same pool
// size, timeouts and retries (internal/redis defaults), no OpenTelemetry
// hook, so that the reference costs one round trip and nothing of ours.
func stubRedisClient(rs StubRedis) *goredis.Client {
	d := kvredis.DefaultConfig()
	return goredis.NewClient(&goredis.Options{
		Addr: rs.Addr, Username: rs.Username, Password: rs.Password, DB: rs.DB, PoolSize: rs.PoolSize,
		DialTimeout: d.DialTimeout, ReadTimeout: d.ReadTimeout, WriteTimeout: d.WriteTimeout,
		ContextTimeoutEnabled: true, MaxRetries: d.MaxRetries,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	})
}

// redisStub answers with next after one HMGET of rs.Key; a missing hash or
// a failed read is a 503, so that the load counts it as an error rather
// than as a fast answer that skipped the round trip.
func redisStub(rdb *goredis.Client, rs StubRedis, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		vals, err := rdb.HMGet(r.Context(), rs.Key, rs.Fields...).Result()
		if err != nil || len(vals) == 0 || vals[0] == nil {
			http.Error(w, `{"error":"unavailable"}`, http.StatusServiceUnavailable)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// confirmPool is one connection with a pool of confirm-mode channels, as
// internal/rabbitmq's Publisher keeps, without its supervisor or tracing:
// the reference costs the broker's round trip and nothing of ours.
type confirmPool struct {
	conn *amqp.Connection
	idle chan *amqp.Channel
}

// dialConfirmPool connects and opens ra.Channels confirm-mode channels. The
// queue must exist already (the harness declares it as the raw publish's):
// a stub that declared it itself could differ from the baseline's.
func dialConfirmPool(ra StubAMQP) (*confirmPool, error) {
	if ra.Channels < 1 || ra.Timeout <= 0 {
		return nil, fmt.Errorf("stub amqp: %d channels, timeout %s", ra.Channels, ra.Timeout)
	}
	conn, err := amqp.Dial(ra.URL)
	if err != nil {
		return nil, fmt.Errorf("rabbitmq: %w", err)
	}
	p := &confirmPool{conn: conn, idle: make(chan *amqp.Channel, ra.Channels)}
	ch, err := conn.Channel()
	if err == nil {
		_, err = ch.QueueDeclarePassive(ra.Queue, true, false, false, false, nil)
		ch.Close()
	}
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("rabbitmq queue %s: %w", ra.Queue, err)
	}
	for range ra.Channels {
		ch, err := confirmChannel(conn)
		if err != nil {
			conn.Close()
			return nil, err
		}
		p.idle <- ch
	}
	return p, nil
}

func confirmChannel(conn *amqp.Connection) (*amqp.Channel, error) {
	ch, err := conn.Channel()
	if err != nil {
		return nil, fmt.Errorf("rabbitmq channel: %w", err)
	}
	if err := ch.Confirm(false); err != nil {
		ch.Close()
		return nil, fmt.Errorf("rabbitmq confirm mode: %w", err)
	}
	return ch, nil
}

// publish sends msg to queue and waits for its confirm. The channel goes
// back to the pool as soon as the message is written, so that other
// requests publish on it while this one waits, as the API's publisher does.
func (p *confirmPool) publish(ctx context.Context, queue string, msg amqp.Publishing) error {
	var ch *amqp.Channel
	select {
	case ch = <-p.idle:
	case <-ctx.Done():
		return fmt.Errorf("no free channel: %w", ctx.Err())
	}
	dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, "", queue, false, false, msg)
	p.giveBack(ch)
	if err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	if dc == nil {
		return errors.New("publish: channel not in confirm mode")
	}
	ok, err := dc.WaitContext(ctx)
	if err != nil {
		return fmt.Errorf("confirm: %w", err)
	}
	if !ok {
		return errors.New("publish: nacked")
	}
	return nil
}

// giveBack returns ch, replaced by a new channel if the broker closed it;
// when none can be opened the dead one goes back, so that the publishes
// after it fail at once (503s the load counts) rather than wait for a
// channel that never comes.
func (p *confirmPool) giveBack(ch *amqp.Channel) {
	if ch.IsClosed() {
		if nc, err := confirmChannel(p.conn); err == nil {
			ch = nc
		}
	}
	p.idle <- ch // never blocks: only borrowed channels come back
}

// amqpStub answers with next after one persistent message of ra.Size bytes
// was confirmed on ra.Queue; any failure is a 503, so that the load counts
// it as an error rather than as a fast answer that skipped the broker.
func amqpStub(pool *confirmPool, ra StubAMQP, next http.Handler) http.Handler {
	body := stubBody(ra.Size)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The API reads the whole PUT body before it publishes.
		if _, err := io.Copy(io.Discard, http.MaxBytesReader(w, r.Body, 1<<20)); err != nil {
			http.Error(w, `{"error":"bad body"}`, http.StatusBadRequest)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), ra.Timeout)
		defer cancel()
		msg := amqp.Publishing{
			DeliveryMode: amqp.Persistent, ContentType: "application/json",
			MessageId: uuid.NewString(), Timestamp: time.Now().UTC(), Type: string(kv.KindPut),
			Body: body,
		}
		if err := pool.publish(ctx, ra.Queue, msg); err != nil {
			http.Error(w, `{"error":"unavailable"}`, http.StatusServiceUnavailable)
			return
		}
		next.ServeHTTP(w, r)
	})
}
