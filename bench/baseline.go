package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	amqp "github.com/rabbitmq/amqp091-go"
	goredis "github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/kvstack/kvstack/internal/kv"
	"github.com/kvstack/kvstack/internal/postgres"
	kvredis "github.com/kvstack/kvstack/internal/redis"
	"github.com/kvstack/kvstack/migrations"
)

// StubRedis, when Addr is set, makes the stub read Redis once per request.
type StubRedis struct {
	Addr, Password string
	DB, PoolSize   int
	Key            string   // a hash that exists
	Fields         []string // read with one HMGET, as the API reads a cache entry
}

// StubAMQP, when Queue is set, makes the stub publish one confirmed
// message per request, as the API accepts a PUT.
type StubAMQP struct {
	URL, Queue string
	Channels   int           // confirm-mode channels on the one connection
	Timeout    time.Duration // bounds one publish, from the call to the confirm
	Size       int           // message body bytes
}

// ServeStub is the baseline's upstream: the least a Go HTTP handler can do,
// answering every request with a JSON body of size bytes, on each address.
// With rs.Addr set it is the reference upstream instead: the same handler
// after one Redis read, the least a cache-aside GET can do; with ra.Queue
// set, the same handler answering 202 after one confirmed publish, the
// least an accept-after-confirm PUT can do.
func ServeStub(ctx context.Context, addrs []string, size int, rs StubRedis, ra StubAMQP) error {
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
		Addr: rs.Addr, Password: rs.Password, DB: rs.DB, PoolSize: rs.PoolSize,
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

// child is a process the harness started and must stop.
type child struct {
	name string
	cmd  *exec.Cmd
}

func startChild(name, log string, env []string, argv ...string) (*child, error) {
	f, err := os.OpenFile(log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() { _ = cmd.Wait(); f.Close() }()
	return &child{name: name, cmd: cmd}, nil
}

// stop sends SIGTERM to the child's process, then SIGKILL after grace.
func (c *child) stop(grace time.Duration) {
	if c == nil || c.cmd.Process == nil {
		return
	}
	p := c.cmd.Process
	_ = p.Signal(syscall.SIGTERM)
	deadline := time.Now().Add(grace)
	for time.Now().Before(deadline) {
		if p.Signal(syscall.Signal(0)) != nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	_ = p.Kill()
}

// renderNginx writes the stack's own nginx template with the baseline's
// addresses: the same server block, keepalive, limits and access log format
// as the edge, only the upstream differs.
func renderNginx(root, dir, listen string, upstreams [2]string) (string, error) {
	tpl, err := os.ReadFile(filepath.Join(root, "nginx", "nginx.conf.template"))
	if err != nil {
		return "", err
	}
	status, err := freeLoopbackAddr()
	if err != nil {
		return "", err
	}
	vars := map[string]string{
		"NGINX_LISTEN": listen,
		// Its own stub_status port, beside the stack's nginx.
		"NGINX_STATUS_LISTEN": status,
		"API1_ADDR":           upstreams[0],
		"API2_ADDR":           upstreams[1],
		"KV_MAX_BODY_BYTES":   envOr("KV_MAX_BODY_BYTES", "1048576"),
		"NGINX_RATE_LIMIT":    envOr("NGINX_RATE_LIMIT", "10000r/s"),
		"NGINX_RATE_BURST":    envOr("NGINX_RATE_BURST", "20000"),
		"NGINX_ACCESS_LOG":    filepath.Join(dir, "nginx-access.log"),
		"NGINX_ERROR_LOG":     filepath.Join(dir, "nginx-error.log"),
	}
	conf := string(tpl)
	for k, v := range vars {
		conf = strings.ReplaceAll(conf, "${"+k+"}", v)
	}
	path := filepath.Join(dir, "nginx.conf")
	return path, os.WriteFile(path, []byte(conf), 0o644)
}

// freeLoopbackAddr is a port on 127.0.0.1 that nothing listens on now.
func freeLoopbackAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// rawPublisher publishes persistent messages on one confirm-mode channel,
// keeping up to window unconfirmed: the broker's own speed for the API's
// kind of message.
type rawPublisher struct {
	url  string
	conn *amqp.Connection
	ch   *amqp.Channel
}

func newRawPublisher(url string) (*rawPublisher, error) {
	p := &rawPublisher{url: url}
	return p, p.live()
}

// live reconnects when the connection or channel was lost (another
// engineer's test may restart the broker; a failed passive declare closes
// the channel).
func (p *rawPublisher) live() error {
	if p.conn != nil && !p.conn.IsClosed() && p.ch != nil && !p.ch.IsClosed() {
		return nil
	}
	if p.conn != nil {
		p.conn.Close()
	}
	conn, err := amqp.Dial(p.url)
	if err != nil {
		return fmt.Errorf("rabbitmq: %w", err)
	}
	ch, err := conn.Channel()
	if err == nil {
		err = ch.Confirm(false)
	}
	if err != nil {
		conn.Close()
		return fmt.Errorf("rabbitmq channel: %w", err)
	}
	p.conn, p.ch = conn, ch
	return nil
}

func (p *rawPublisher) Close() {
	if p.conn != nil {
		p.conn.Close()
	}
}

// declareScratch declares a durable queue of the app's queue type.
func (p *rawPublisher) declareScratch(name, queueType string) error {
	if err := p.live(); err != nil {
		return err
	}
	_, err := p.ch.QueueDeclare(name, true, false, false, false, amqp.Table{amqp.QueueTypeArg: queueType})
	return err
}

func (p *rawPublisher) deleteQueue(name string) {
	if p.live() != nil {
		return
	}
	_, _ = p.ch.QueueDelete(name, false, false, false)
}

// depth is the number of ready messages in queue.
func (p *rawPublisher) depth(queue string) (int, error) {
	if err := p.live(); err != nil {
		return 0, err
	}
	q, err := p.ch.QueueDeclarePassive(queue, true, false, false, false, nil)
	return q.Messages, err
}

// settle waits up to 5 s for queue to hold n ready messages (the broker
// counts a message once it is routed, a little after its confirm) and
// returns the last depth seen.
func (p *rawPublisher) settle(queue string, n int) (int, error) {
	var (
		have int
		err  error
	)
	for range 50 {
		if have, err = p.depth(queue); err == nil && have >= n {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	return have, err
}

// publish sends what mk makes (i counts from 0) to queue with window
// confirms in flight, until dur passes or n (0: no bound) were confirmed.
// It returns the confirmed count and the time taken.
func (p *rawPublisher) publish(ctx context.Context, queue string, window int, dur time.Duration, n int, mk func(i int) amqp.Publishing) (int, time.Duration, error) {
	if err := p.live(); err != nil {
		return 0, 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, dur)
	defer cancel()
	start := time.Now()
	inflight := make([]*amqp.DeferredConfirmation, 0, window)
	confirmed := 0
	wait := func(dc *amqp.DeferredConfirmation) error {
		ok, err := dc.WaitContext(ctx)
		if err != nil {
			return err
		}
		if !ok {
			return errors.New("nacked")
		}
		confirmed++
		return nil
	}
	for i := 0; n == 0 || i < n; i++ {
		if ctx.Err() != nil {
			break
		}
		if len(inflight) == window {
			if err := wait(inflight[0]); err != nil {
				break
			}
			inflight = inflight[1:]
		}
		dc, err := p.ch.PublishWithDeferredConfirmWithContext(ctx, "", queue, false, false, mk(i))
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			return confirmed, time.Since(start), err
		}
		inflight = append(inflight, dc)
	}
	fctx, fcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer fcancel()
	if n > 0 { // a fill: done when everything is confirmed
		for _, dc := range inflight {
			if ok, err := dc.WaitContext(fctx); err != nil || !ok {
				return confirmed, time.Since(start), fmt.Errorf("confirm: ok=%v %v", ok, err)
			}
			confirmed++
		}
		return confirmed, time.Since(start), nil
	}
	// A timed run counts what was confirmed within the time; the rest is
	// still waited for, so the next run starts on a quiet channel.
	elapsed := time.Since(start)
	for _, dc := range inflight {
		_, _ = dc.WaitContext(fctx)
	}
	return confirmed, elapsed, nil
}

// opMessage is an add_key message for key as the API publishes it.
func opMessage(key, value string) amqp.Publishing {
	op := kv.Op{Kind: kv.KindPut, Key: key, Value: value, Version: kv.Version{Time: time.Now().UTC().Truncate(time.Microsecond), OpID: uuid.New()}}
	body, _ := kv.EncodeMessage(op)
	return amqp.Publishing{
		DeliveryMode: amqp.Persistent,
		ContentType:  "application/json",
		MessageId:    op.Version.OpID.String(),
		Timestamp:    op.Version.Time,
		Type:         string(op.Kind),
		Body:         body,
	}
}

// scratchStore makes schema kvbench hold a fresh kv_store, created by the
// project's own migrations (they apply to their connection's search_path),
// so that the raw upsert writes to the consumer's table, constraints and
// index included.
func scratchStore(ctx context.Context, pool *pgxpool.Pool) error {
	if _, err := pool.Exec(ctx, `DROP SCHEMA IF EXISTS kvbench CASCADE; CREATE SCHEMA kvbench`); err != nil {
		return fmt.Errorf("scratch schema: %w", err)
	}
	cfg := pool.Config() // a copy
	cfg.ConnConfig.RuntimeParams["search_path"] = "kvbench"
	cfg.MinConns, cfg.MaxConns = 0, 1
	scratch, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("scratch schema: %w", err)
	}
	defer scratch.Close()
	if err := migrations.Apply(ctx, scratch); err != nil {
		return fmt.Errorf("scratch schema: %w", err)
	}
	return nil
}

// rawUpsert runs batches of batch new keys through the consumer's upsert
// from clients connections, one transaction each (as the consumer commits
// each batch), for dur; it returns rows per second.
func rawUpsert(ctx context.Context, pool *pgxpool.Pool, clients, batch int, dur time.Duration, value string, run int) (float64, error) {
	ctx, cancel := context.WithTimeout(ctx, dur)
	defer cancel()
	sql := postgres.UpsertStatement("kvbench.kv_store") // the consumer's statement, on a scratch table
	var (
		mu    sync.Mutex
		rows  int
		first error
		wg    sync.WaitGroup
	)
	start := time.Now()
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			keys := make([]string, batch)
			values := make([]*string, batch)
			times := make([]time.Time, batch)
			ids := make([][16]byte, batch) // as the consumer passes them
			deleted := make([]bool, batch)
			for n := 0; ; n++ {
				now := time.Now()
				for i := range batch {
					keys[i] = fmt.Sprintf("r%d:c%d:%09d:%03d", run, c, n, i)
					values[i] = &value
					times[i] = now
					ids[i] = uuid.New()
				}
				err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
					rs, err := tx.Query(ctx, sql, keys, values, times, ids, deleted)
					if err != nil {
						return err
					}
					_, err = pgx.CollectRows(rs, pgx.RowTo[string])
					return err
				})
				if ctx.Err() != nil {
					return
				}
				mu.Lock()
				if err != nil && first == nil {
					first = err
				}
				if err == nil {
					rows += batch
				}
				mu.Unlock()
				if err != nil {
					return
				}
			}
		}()
	}
	wg.Wait()
	return float64(rows) / time.Since(start).Seconds(), first
}

func (p *rawPublisher) purge(name string) {
	if p.live() != nil {
		return
	}
	_, _ = p.ch.QueuePurge(name, false)
}

// rawConsume drains n messages from queue with a plain amqp091-go consumer
// on its own connection, as the stack's consumer takes them (manual ack, QoS
// prefetch, one multiple-ack per batch deliveries) but doing nothing with
// them, and returns its rate from the first delivery to the last ack: what
// the broker allows this way of consuming, before any of our work.
func rawConsume(ctx context.Context, url, queue string, n, prefetch, batch int, limit time.Duration) (float64, error) {
	if n < 2 || batch < 1 {
		return 0, fmt.Errorf("raw consume: %d messages in batches of %d", n, batch)
	}
	conn, err := amqp.Dial(url)
	if err != nil {
		return 0, fmt.Errorf("rabbitmq: %w", err)
	}
	defer conn.Close() // unacked deliveries go back to the queue
	ch, err := conn.Channel()
	if err != nil {
		return 0, fmt.Errorf("rabbitmq channel: %w", err)
	}
	if err := ch.Qos(prefetch, 0, false); err != nil {
		return 0, fmt.Errorf("qos %d: %w", prefetch, err)
	}
	ds, err := ch.Consume(queue, "kvbench-raw-consume", false, false, false, false, nil)
	if err != nil {
		return 0, fmt.Errorf("consume %s: %w", queue, err)
	}
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	var t0 time.Time
	for got := 0; got < n; {
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("raw consume: %d of %d messages within %s: %w", got, n, limit, ctx.Err())
		case d, ok := <-ds:
			if !ok {
				return 0, fmt.Errorf("raw consume: deliveries closed after %d of %d messages", got, n)
			}
			if got++; got == 1 {
				t0 = time.Now()
			}
			if got%batch == 0 || got == n {
				if err := d.Ack(true); err != nil {
					return 0, fmt.Errorf("raw consume: ack: %w", err)
				}
			}
		}
	}
	// The n-1 messages after the first, as drain counts from the first
	// handled one.
	return float64(n-1) / time.Since(t0).Seconds(), nil
}
