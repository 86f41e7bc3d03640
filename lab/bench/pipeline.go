package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/kvstack/kvstack/internal/kv"
	"github.com/kvstack/kvstack/internal/postgres"
	kvredis "github.com/kvstack/kvstack/internal/redis"
	"github.com/kvstack/kvstack/lab/native/engines"
)

// Pipeline configures the apply reference (`kvbench pipeline`): the least
// code that does a consumer's work, with nothing of kvstack's around it.
type Pipeline struct {
	Addr        string // serves /metrics: kvbench_pipeline_messages_total
	AMQPURL     string
	AMQPCAFile  string // the CA an amqps:// AMQPURL's certificate chains to
	Queue       string
	Prefetch    int
	Batch       int
	Wait        time.Duration // a batch's longest wait for more messages
	DatabaseURL string
	Table       string // a scratch copy of kv_store
	Redis       kvredis.Config
	Channel     string // the NOTIFY channel
}

// pipelineCounter counts the messages the pipeline acked.
const pipelineCounter = "kvbench_pipeline_messages_total"

// RunPipeline consumes p.Queue until ctx ends: batches of p.Batch (or what
// p.Wait brings), each decoded with encoding/json, upserted in one
// transaction by the consumer's statement with one pg_notify of the
// versions, written to Redis by one pipeline of the cache's
// compare-and-set, and acked with one multiple-ack. No tracing, no logs,
// one counter.
func RunPipeline(ctx context.Context, p Pipeline) error {
	pool, err := pgxpool.New(ctx, p.DatabaseURL)
	if err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	defer pool.Close()
	rdb := stubRedisClient(StubRedis{Addr: p.Redis.Addr, Username: p.Redis.Username, Password: string(p.Redis.Password), DB: p.Redis.DB, PoolSize: p.Redis.PoolSize})
	defer rdb.Close()
	cache := kvredis.NewCache(rdb, p.Redis, nil)
	conn, err := engines.DialAMQP(p.AMQPURL, p.AMQPCAFile)
	if err != nil {
		return fmt.Errorf("rabbitmq: %w", err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	if err := ch.Qos(p.Prefetch, 0, false); err != nil {
		return err
	}
	ds, err := ch.Consume(p.Queue, "kvbench-pipeline", false, false, false, false, nil)
	if err != nil {
		return err
	}
	count := prometheus.NewCounter(prometheus.CounterOpts{Name: pipelineCounter, Help: "Messages applied and acked."})
	reg := prometheus.NewRegistry()
	reg.MustRegister(count)
	srv := &http.Server{Addr: p.Addr, Handler: promhttp.HandlerFor(reg, promhttp.HandlerOpts{}), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.ListenAndServe() }()
	defer srv.Close()
	a := pipelineApplier{pool: pool, cache: cache, sql: postgres.UpsertStatement(p.Table), channel: p.Channel}
	for {
		batch, err := collectBatch(ctx, ds, p.Batch, p.Wait)
		if len(batch) > 0 {
			if err := a.apply(ctx, batch); err != nil {
				return err
			}
			if err := batch[len(batch)-1].Ack(true); err != nil {
				return err
			}
			count.Add(float64(len(batch)))
		}
		if err != nil {
			return err
		}
	}
}

// collectBatch waits for a first delivery, then takes more until size or
// wait has passed since the first; it returns what it has with ctx's error
// when ctx ends.
func collectBatch(ctx context.Context, ds <-chan amqp.Delivery, size int, wait time.Duration) ([]amqp.Delivery, error) {
	var (
		out      []amqp.Delivery
		deadline <-chan time.Time
	)
	for len(out) < size {
		select {
		case d, ok := <-ds:
			if !ok {
				return out, errors.New("deliveries closed")
			}
			out = append(out, d)
			if deadline == nil {
				deadline = time.After(wait)
			}
		case <-deadline:
			return out, nil
		case <-ctx.Done():
			return out, ctx.Err()
		}
	}
	return out, nil
}

type pipelineApplier struct {
	pool    *pgxpool.Pool
	cache   *kvredis.Cache
	sql     string
	channel string
}

// pipelineMessage is the body of an add_key message.
type pipelineMessage struct {
	Key       string    `json:"key"`
	Value     string    `json:"value"`
	Timestamp time.Time `json:"timestamp"`
	OpID      uuid.UUID `json:"op_id"`
}

func (a pipelineApplier) apply(ctx context.Context, batch []amqp.Delivery) error {
	n := len(batch)
	keys, values, times := make([]string, n), make([]string, n), make([]time.Time, n)
	ids, deleted := make([][16]byte, n), make([]bool, n)
	writers := make([]*string, n) // none named, as with auth off
	entries := make([]kv.Entry, n)
	var (
		news    []string // payloads under NOTIFY's 8000 bytes
		payload strings.Builder
	)
	for i, d := range batch {
		var m pipelineMessage
		if err := json.Unmarshal(d.Body, &m); err != nil {
			return fmt.Errorf("decode: %w", err)
		}
		keys[i], values[i], times[i], ids[i] = m.Key, m.Value, m.Timestamp, m.OpID
		entries[i] = kv.Entry{Key: m.Key, Value: m.Value, Version: kv.Version{Time: m.Timestamp, OpID: m.OpID}}
		line := entries[i].Version.String() + " " + m.Key
		if payload.Len() > 0 && payload.Len()+1+len(line) > 7900 {
			news, payload = append(news, payload.String()), strings.Builder{}
		}
		if payload.Len() > 0 {
			payload.WriteByte('\n')
		}
		payload.WriteString(line)
	}
	news = append(news, payload.String())
	err := pgx.BeginFunc(ctx, a.pool, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, a.sql, keys, values, times, ids, deleted, writers)
		if err != nil {
			return err
		}
		if _, err := pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
			return err
		}
		// One statement for the batch's news, as the consumer sends it.
		_, err = tx.Exec(ctx, `SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p`, a.channel, news)
		return err
	})
	if err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	return a.cache.Apply(ctx, entries)
}

// pipelinePrefix keeps the pipeline's cache entries apart from the stack's.
const pipelinePrefix = "kvbench:pipeline:"

// drainPipeline fills the scratch queue with n messages like the app's and
// has `kvbench pipeline` drain them into the scratch table and the cache
// under its own prefix, measured as a consumer; everything is removed
// afterwards.
func (h *harness) drainPipeline(ctx context.Context, n, prefetch, batch int) (drained, error) {
	rc := h.cons.RabbitMQ
	if err := h.pub.declareScratch(scratchQueue, rc.QueueType); err != nil {
		return drained{}, fmt.Errorf("scratch queue: %w", err)
	}
	defer h.pub.deleteQueue(scratchQueue)
	h.pub.purge(scratchQueue)
	defer func() {
		_, _ = h.pool.Exec(context.WithoutCancel(ctx), `TRUNCATE kvbench.kv_store`)
		h.evictCache(context.WithoutCancel(ctx), pipelinePrefix)
	}()
	got, err := h.fill(ctx, scratchQueue, n, 0)
	if err != nil {
		return drained{}, err
	}
	self, err := h.self()
	if err != nil {
		return drained{}, err
	}
	log := filepath.Join(h.dir, "pipeline.log")
	// The consumer's environment, but the stack's administrator for the
	// broker and PostgreSQL: the consumers' users may not consume the
	// scratch queue or write the scratch schema.
	env := h.stack.env("consumer", "RABBITMQ_URL="+h.pub.url, "DATABASE_URL="+h.stack.s.Get("DATABASE_URL"))
	c, err := h.spawn("pipeline", log, env, self, "pipeline", "-addr", h.o.port(11), "-queue", scratchQueue,
		"-prefetch", fmt.Sprint(prefetch), "-batch", fmt.Sprint(batch), "-wait", h.cons.Consumer.BatchWait.String(),
		"-table", "kvbench.kv_store", "-redis-prefix", h.api.Redis.KeyPrefix+pipelinePrefix)
	if err != nil {
		return drained{}, err
	}
	defer c.stop(10 * time.Second)
	d, err := h.drain(ctx, portOf(h.o.port(11)), pipelineCounter, got, 5*time.Minute, h.childProcs(c, "consumer", applyRoles...))
	if err != nil {
		return d, fmt.Errorf("%w (log %s)", err, log)
	}
	return d, nil
}
