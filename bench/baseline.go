package bench

import (
	"context"
	"errors"
	"fmt"
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

	"github.com/kvstack/kvstack/internal/kv"
	"github.com/kvstack/kvstack/internal/postgres"
)

// ServeStub is the baseline's upstream: the least a Go HTTP handler can do,
// answering every request with a JSON body of size bytes, on each address.
func ServeStub(ctx context.Context, addrs []string, size int) error {
	body := []byte(`{"v":"` + strings.Repeat("x", max(size-8, 0)) + `"}` + "\n")[:max(size, 0)]
	h := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	})
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
	vars := map[string]string{
		"NGINX_LISTEN":      listen,
		"API1_ADDR":         upstreams[0],
		"API2_ADDR":         upstreams[1],
		"KV_MAX_BODY_BYTES": envOr("KV_MAX_BODY_BYTES", "1048576"),
		"NGINX_RATE_LIMIT":  envOr("NGINX_RATE_LIMIT", "10000r/s"),
		"NGINX_RATE_BURST":  envOr("NGINX_RATE_BURST", "20000"),
		"NGINX_ACCESS_LOG":  filepath.Join(dir, "nginx-access.log"),
		"NGINX_ERROR_LOG":   filepath.Join(dir, "nginx-error.log"),
	}
	conf := string(tpl)
	for k, v := range vars {
		conf = strings.ReplaceAll(conf, "${"+k+"}", v)
	}
	path := filepath.Join(dir, "nginx.conf")
	return path, os.WriteFile(path, []byte(conf), 0o644)
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

// scratchTable is kv_store's shape, in a schema of the harness's own.
const scratchTable = `
CREATE SCHEMA IF NOT EXISTS kvbench;
DROP TABLE IF EXISTS kvbench.kv_store;
CREATE TABLE kvbench.kv_store (
    key          TEXT COLLATE "C" PRIMARY KEY,
    value        TEXT,
    last_updated TIMESTAMPTZ NOT NULL,
    op_id        UUID NOT NULL,
    deleted      BOOLEAN NOT NULL DEFAULT false,
    CONSTRAINT kv_store_live_has_value CHECK (deleted OR value IS NOT NULL)
);
CREATE INDEX ON kvbench.kv_store (last_updated) WHERE deleted;`

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
			ids := make([]uuid.UUID, batch)
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
