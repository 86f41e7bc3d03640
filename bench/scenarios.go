package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	amqp "github.com/rabbitmq/amqp091-go"
)

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// seed writes count live rows key = prefix + zero-padded number straight
// into PostgreSQL, as the consumer would have (never through the cache).
func (h *harness) seed(ctx context.Context, prefix string, from, count int) error {
	_, err := h.pool.Exec(ctx, `
		INSERT INTO kv_store (key, value, last_updated, op_id, deleted)
		SELECT $1 || lpad(g::text, 10, '0'), $2, now(), gen_random_uuid(), false
		  FROM generate_series($3::int, $4::int) g
		ON CONFLICT (key) DO NOTHING`, prefix, h.value, from, from+count-1)
	return err
}

func seedKey(prefix string, i int) string { return fmt.Sprintf("%s%010d", prefix, i) }

// get returns an Op that GETs url(i) with the worker's client, ok on want.
func (h *harness) get(url func(i int64) string, want int) Op {
	return func(ctx context.Context, w int, i int64) (int, bool) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url(i), nil)
		code, err := h.clients.Do(w, req)
		return code, err == nil && code == want
	}
}

// 1. GET cache hit vs nginx → minimal Go handler.
func (h *harness) getHit(ctx context.Context) (*Section, error) {
	o := h.o
	sec := &Section{Title: "GET cache hit through nginx",
		Setup: fmt.Sprintf("%d connections, GET /api?key=K over %d keys seeded in PostgreSQL and read once so that Redis holds them. "+
			"Baseline: a second nginx rendered from the same nginx/nginx.conf.template (same server block, upstream keepalive, rate limit and access log), "+
			"its two upstreams a minimal Go handler returning a body of the same size, on %s. "+
			"Reference (no target, measured in the same alternation): another such nginx on %s whose upstreams are the same handler after one go-redis HMGET of a cached entry (one seeded key's Redis hash; pool %d, both replicas' REDIS_POOL_SIZE; no tracing) per request.",
			o.Conns, o.HitKeys, o.BaseNginx, o.RefNginx, 2*h.api.Redis.PoolSize)}
	if err := h.seed(ctx, "bench:hit:", 0, o.HitKeys); err != nil {
		return sec, err
	}
	urls := make([]string, o.HitKeys)
	for i := range urls {
		urls[i] = o.Nginx + "/api?key=" + seedKey("bench:hit:", i)
	}
	// Read each key once (a miss that fills the cache), then check a hit.
	warm := Closed(ctx, 8, time.Minute, int64(o.HitKeys), h.get(func(i int64) string { return urls[i] }, 200))
	if warm.OK != int64(o.HitKeys) {
		return sec, fmt.Errorf("warming the cache: %s", warm)
	}
	resp, err := http.Get(urls[0])
	if err != nil {
		return sec, err
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !bytes.Contains(body, []byte(`"source":"redis"`)) {
		return sec, fmt.Errorf("GET %s after a read: %s, want a cache hit", urls[0], body)
	}
	size := len(body)
	sec.Setup += fmt.Sprintf(" Response body: %d bytes.", size)

	// The baseline: the stub behind a second nginx.
	base, stopBase, err := h.startBaseline(ctx, "baseline", h.dir, o.BaseNginx, [2]string{o.StubA, o.StubB}, "-size", fmt.Sprint(size))
	if err != nil {
		return sec, err
	}
	defer stopBase()
	// The reference: the same stub reading Redis once per request, behind a
	// third nginx, so that the plain baseline stays as it was.
	refArgs, err := h.refStubArgs(ctx)
	if err != nil {
		return sec, err
	}
	refDir := filepath.Join(h.dir, "reference")
	if err := os.MkdirAll(refDir, 0o755); err != nil {
		return sec, err
	}
	refURL, stopRef, err := h.startBaseline(ctx, "reference", refDir, o.RefNginx, [2]string{o.RefStubA, o.RefStubB},
		append([]string{"-size", fmt.Sprint(size)}, refArgs...)...)
	if err != nil {
		return sec, err
	}
	defer stopRef()

	app := h.get(func(i int64) string { return urls[i%int64(len(urls))] }, 200)
	baseline := h.get(func(int64) string { return base }, 200)
	reference := h.get(func(int64) string { return refURL }, 200)
	Closed(ctx, o.Conns, o.Warm, 0, app)
	Closed(ctx, o.Conns, o.Warm, 0, baseline)
	Closed(ctx, o.Conns, o.Warm, 0, reference)
	var aRate, bRate, cRate, aP99, bP99, cP99, aP50, bP50 []float64
	for r := range o.Reps {
		if err := WaitQuiet(ctx); err != nil {
			return sec, err
		}
		wait := func() {}
		if r == 0 {
			wait = h.profile(ctx, o.APIPorts[0], "api-get-hit-cpu", int(o.Dur.Seconds())-1)
		}
		a := Closed(ctx, o.Conns, o.Dur, 0, app)
		wait()
		b := Closed(ctx, o.Conns, o.Dur, 0, baseline)
		c := Closed(ctx, o.Conns, o.Dur, 0, reference)
		Log("get-hit run %d: app %s | baseline %s | + one Redis read %s", r+1, a, b, c)
		if a.OK == 0 || b.OK == 0 || c.OK == 0 {
			return sec, fmt.Errorf("run %d: app %s, baseline %s, reference %s", r+1, a, b, c)
		}
		aRate, bRate, cRate = append(aRate, a.Rate()), append(bRate, b.Rate()), append(cRate, c.Rate())
		aP50, bP50 = append(aP50, ms(a.Quantile(.5))), append(bP50, ms(b.Quantile(.5)))
		aP99, bP99, cP99 = append(aP99, ms(a.Quantile(.99))), append(bP99, ms(b.Quantile(.99))), append(cP99, ms(c.Quantile(.99)))
		if a.Errors > 0 {
			sec.Notes = append(sec.Notes, fmt.Sprintf("run %d: %d app requests failed (statuses %v)", r+1, a.Errors, a.Status))
		}
		if c.Errors > 0 {
			sec.Notes = append(sec.Notes, fmt.Sprintf("run %d: %d reference requests failed (statuses %v)", r+1, c.Errors, c.Status))
		}
	}
	sec.Figures = []Figure{
		{"kvstack GET hit", "req/s", aRate}, {"baseline nginx → Go handler", "req/s", bRate},
		{"reference: nginx → Go handler + one Redis read", "req/s", cRate},
		{"kvstack p50", "ms", aP50}, {"baseline p50", "ms", bP50},
		{"kvstack p99", "ms", aP99}, {"baseline p99", "ms", bP99},
		{"reference: nginx → Go handler + one Redis read, p99", "ms", cP99},
	}
	rr := Summarise(aRate).Median / Summarise(bRate).Median
	pr := Summarise(aP99).Median / Summarise(bP99).Median
	cr := Summarise(aRate).Median / Summarise(cRate).Median
	sec.Targets = []Target{
		{Name: "GET hit throughput / baseline", Got: fmt.Sprintf("%.2f ×", rr), Want: "≥ 0.6 ×", Met: rr >= 0.6},
		{Name: "GET hit p99 / baseline p99", Got: fmt.Sprintf("%.2f ×", pr), Want: "≤ 2 ×", Met: pr <= 2},
		// How near the design's own ceiling the app is: reported, no target.
		{Name: "GET hit / nginx → handler + one Redis read", Got: fmt.Sprintf("%.2f ×", cr)},
	}
	return sec, nil
}

// startBaseline starts the stub with args on both upstream addresses and an
// nginx rendered from the stack's template into dir, listening on listen,
// and waits until a GET through it answers. It returns that GET's URL and a
// function stopping both (restore stops them too, on any error path).
func (h *harness) startBaseline(ctx context.Context, name, dir, listen string, ups [2]string, args ...string) (string, func(), error) {
	self, err := os.Executable()
	if err != nil {
		return "", nil, err
	}
	stub, err := startChild(name+" stub", dir+"/stub.log", nil, append([]string{self, "stub", "-addr", ups[0] + "," + ups[1]}, args...)...)
	if err != nil {
		return "", nil, err
	}
	h.children = append(h.children, stub)
	conf, err := renderNginx(h.o.Root, dir, listen, ups)
	if err != nil {
		return "", nil, err
	}
	ngx, err := startChild(name+" nginx", dir+"/nginx.out", nil, "nginx", "-p", dir+"/", "-c", conf, "-e", dir+"/nginx-error.log",
		"-g", "daemon off; pid "+dir+"/nginx.pid;")
	if err != nil {
		return "", nil, err
	}
	h.children = append(h.children, ngx)
	url := "http://" + listen + "/api?key=x"
	if err := waitHTTP(ctx, url, 10*time.Second); err != nil {
		return "", nil, fmt.Errorf("%s nginx: %w (see %s)", name, err, dir)
	}
	return url, func() { ngx.stop(5 * time.Second); stub.stop(5 * time.Second) }, nil
}

// refStubArgs are the reference stub's Redis flags: the cache entry of the
// first seeded hit key (read through the app just before, so it exists),
// with the fields it has, as the API's HMGET of an entry; the pool of both
// replicas together, as one stub process stands for the two.
func (h *harness) refStubArgs(ctx context.Context) ([]string, error) {
	rc := h.api.Redis
	key := rc.KeyPrefix + seedKey("bench:hit:", 0)
	fields, err := h.rdb.HKeys(ctx, key).Result()
	if err != nil {
		return nil, fmt.Errorf("redis HKEYS %s: %w", key, err)
	}
	if len(fields) == 0 {
		return nil, fmt.Errorf("redis: no cache entry %s after reading it", key)
	}
	return []string{"-redis", rc.Addr, "-redis-db", fmt.Sprint(rc.DB), "-redis-pool", fmt.Sprint(2 * rc.PoolSize),
		"-redis-key", key, "-redis-fields", strings.Join(fields, ",")}, nil
}

func waitHTTP(ctx context.Context, url string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			// 2xx: the PUT reference's stub answers every request with a 202.
			if resp.StatusCode/100 == 2 {
				return nil
			}
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		if time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// 2. GET miss vs raw primary-key SELECT.
func (h *harness) getMiss(ctx context.Context) (*Section, error) {
	o := h.o
	runs := o.Reps + 1 // and a warm-up
	sec := &Section{Title: "GET cache miss (PostgreSQL read + cache fill)",
		Setup: fmt.Sprintf("%d connections through nginx, each request a key never read before (%d rows seeded straight into PostgreSQL, never cached; a run stops at %s or after %d keys). "+
			"Baseline: raw pgx primary-key SELECT of the same columns from %d goroutines over a pool of %d connections (both API replicas' pools together).",
			o.Conns, runs*o.MissPerRun, o.Dur, o.MissPerRun, o.Conns, 2*h.api.Postgres.MaxConns)}
	if err := h.seed(ctx, "bench:miss:", 0, runs*o.MissPerRun); err != nil {
		return sec, err
	}
	h.evictCache(ctx, "bench:miss:")
	var sampledHits atomic.Int64
	app := func(run int) Op {
		off := run * o.MissPerRun
		return func(ctx context.Context, w int, i int64) (int, bool) {
			key := seedKey("bench:miss:", off+int(i))
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, o.Nginx+"/api?key="+key, nil)
			resp, err := h.clients[w].Do(req)
			if err != nil {
				return 0, false
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err == nil && !bytes.Contains(body, []byte(`"source":"postgres"`)) {
				sampledHits.Add(1)
			}
			return resp.StatusCode, err == nil && resp.StatusCode == 200
		}
	}
	raw := func(run int) Op {
		off := run * o.MissPerRun
		return func(ctx context.Context, w int, i int64) (int, bool) {
			key := seedKey("bench:miss:", off+int(i)%o.MissPerRun)
			return 0, rawGet(ctx, h.pool, key) == nil
		}
	}
	dur := func(d time.Duration) time.Duration { return d }
	Closed(ctx, o.Conns, dur(o.Warm), int64(o.MissPerRun), app(0))
	Closed(ctx, o.Conns, dur(o.Warm), 0, raw(0))
	var aRate, bRate, aP99, bP99 []float64
	for r := range o.Reps {
		if err := WaitQuiet(ctx); err != nil {
			return sec, err
		}
		wait := func() {}
		if r == 0 {
			wait = h.profile(ctx, o.APIPorts[0], "api-get-miss-cpu", int(o.Dur.Seconds())-1)
		}
		a := Closed(ctx, o.Conns, o.Dur, int64(o.MissPerRun), app(r+1))
		wait()
		b := Closed(ctx, o.Conns, o.Dur, 0, raw(r+1))
		Log("get-miss run %d: app %s | raw select %s", r+1, a, b)
		if a.OK == 0 || b.OK == 0 {
			return sec, fmt.Errorf("run %d: app %s, baseline %s", r+1, a, b)
		}
		if a.OK >= int64(o.MissPerRun) {
			sec.Notes = append(sec.Notes, fmt.Sprintf("run %d used up its %d keys before %s: the figure is bounded by the count", r+1, o.MissPerRun, o.Dur))
		}
		aRate, bRate = append(aRate, a.Rate()), append(bRate, b.Rate())
		aP99, bP99 = append(aP99, ms(a.Quantile(.99))), append(bP99, ms(b.Quantile(.99)))
	}
	if n := sampledHits.Load(); n > 0 {
		sec.Notes = append(sec.Notes, fmt.Sprintf("%d responses were not served from PostgreSQL", n))
	}
	sec.Figures = []Figure{
		{"kvstack GET miss", "req/s", aRate}, {"raw PK SELECT (pgx)", "rows/s", bRate},
		{"kvstack p99", "ms", aP99}, {"raw SELECT p99", "ms", bP99},
	}
	rr := Summarise(aRate).Median / Summarise(bRate).Median
	sec.Targets = []Target{{Name: "GET miss / raw PK SELECT", Got: fmt.Sprintf("%.2f ×", rr)}}
	return sec, nil
}

func rawGet(ctx context.Context, pool *pgxpool.Pool, key string) error {
	var (
		k, v    string
		ts      time.Time
		id      [16]byte
		deleted bool
	)
	return pool.QueryRow(ctx, `SELECT key, value, last_updated, op_id, deleted FROM kv_store WHERE key = $1`, key).
		Scan(&k, &v, &ts, &id, &deleted)
}

// putOp PUTs fresh keys with the value through the edge.
func (h *harness) putOp(prefix string) Op { return h.putTo(h.o.Nginx, prefix) }

// putTo PUTs fresh keys with the value to base's /api, ok on a 202.
func (h *harness) putTo(base, prefix string) Op {
	var seq atomic.Int64
	return func(ctx context.Context, w int, _ int64) (int, bool) {
		n := seq.Add(1)
		body := `{"key":"` + prefix + fmt.Sprint(n) + `","value":"` + h.value + `"}`
		req, _ := http.NewRequestWithContext(ctx, http.MethodPut, base+"/api", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		code, err := h.clients.Do(w, req)
		return code, err == nil && code == 202
	}
}

// 3. PUT accepted vs raw publish with async confirms.
func (h *harness) put(ctx context.Context) (*Section, error) {
	o := h.o
	rc := h.cons.RabbitMQ
	sec := &Section{Title: "PUT accepted (202 after the publisher confirm) through nginx",
		Setup: fmt.Sprintf("%d connections, PUT /api of fresh keys, %d-byte values, with the stack's consumer stopped (the accept path alone; the messages it leaves are the next scenario's backlog). "+
			"Baseline: raw Go publish (amqp091-go) of the same messages, persistent, one confirm-mode channel with 256 unconfirmed in flight, to a scratch durable %s queue (%s) deleted afterwards. "+
			"Reference (no target, measured in the same alternation): an nginx on %s rendered from the same template, its two upstreams a minimal Go handler that reads the PUT body, publishes one persistent message of the app's message size to that scratch queue (purged after each run) "+
			"and answers 202 once the broker confirmed it (one amqp091-go connection, a pool of %d confirm-mode channels, both replicas' RABBITMQ_PUBLISH_CHANNELS, each given back as soon as the message is written; no tracing), driven by the same PUTs.",
			o.Conns, o.ValueLen, rc.QueueType, scratchQueue, o.RefNginx, 2*h.api.RabbitMQ.PublishChannels)}
	if err := h.stopConsumer(ctx); err != nil {
		return sec, err
	}
	if err := h.pub.declareScratch(scratchQueue, rc.QueueType); err != nil {
		return sec, fmt.Errorf("scratch queue: %w", err)
	}
	refURL, stopRef, err := h.startPutRef(ctx, sec)
	if err != nil {
		return sec, err
	}
	defer stopRef()
	var n atomic.Int64
	raw := func(d time.Duration, window int) (int, time.Duration, error) {
		return h.pub.publish(ctx, scratchQueue, window, d, 0, func(int) amqp.Publishing {
			return opMessage(fmt.Sprintf("bench:raw:%d", n.Add(1)), h.value)
		})
	}
	app := h.putOp("bench:put:")
	// The same bodies as the app's load: "ref" is as long as "put".
	reference := h.putTo(refURL, "bench:ref:")
	Closed(ctx, o.Conns, o.Warm, 0, app)
	if _, _, err := raw(o.Warm, 256); err != nil {
		return sec, err
	}
	Closed(ctx, o.Conns, o.Warm, 0, reference)
	h.pub.purge(scratchQueue)
	var aRate, bRate, aP99, b64, cRate, cP99 []float64
	for r := range o.Reps {
		if err := WaitQuiet(ctx); err != nil {
			return sec, err
		}
		wait := func() {}
		if r == 0 {
			wait = h.profile(ctx, o.APIPorts[0], "api-put-cpu", int(o.Dur.Seconds())-1)
		}
		a := Closed(ctx, o.Conns, o.Dur, 0, app)
		wait()
		cnt, el, err := raw(o.Dur, 256)
		if err != nil {
			return sec, err
		}
		h.pub.purge(scratchQueue)
		b := float64(cnt) / el.Seconds()
		// For reference: the broker with as many confirms in flight as the
		// load has connections (each PUT waits for its own confirm).
		cnt, el, err = raw(o.Dur/2, o.Conns)
		if err != nil {
			return sec, err
		}
		h.pub.purge(scratchQueue)
		b64 = append(b64, float64(cnt)/el.Seconds())
		c := Closed(ctx, o.Conns, o.Dur, 0, reference)
		// Its messages are not kept: each run starts on an empty queue.
		h.pub.purge(scratchQueue)
		Log("put run %d: app %s | raw publish %.0f/s (window %d: %.0f/s) | + one confirmed publish %s", r+1, a, b, o.Conns, b64[len(b64)-1], c)
		if a.OK == 0 || b == 0 || c.OK == 0 {
			return sec, fmt.Errorf("run %d: app %s, baseline %.0f/s, reference %s", r+1, a, b, c)
		}
		if a.Errors > 0 {
			sec.Notes = append(sec.Notes, fmt.Sprintf("run %d: %d PUTs failed (statuses %v)", r+1, a.Errors, a.Status))
		}
		if c.Errors > 0 {
			sec.Notes = append(sec.Notes, fmt.Sprintf("run %d: %d reference requests failed (statuses %v)", r+1, c.Errors, c.Status))
		}
		aRate, bRate, aP99 = append(aRate, a.Rate()), append(bRate, b), append(aP99, ms(a.Quantile(.99)))
		cRate, cP99 = append(cRate, c.Rate()), append(cP99, ms(c.Quantile(.99)))
	}
	h.pub.deleteQueue(scratchQueue)
	sec.Figures = []Figure{{"kvstack PUT 202", "req/s", aRate}, {"raw publish, async confirms, window 256", "msg/s", bRate},
		{fmt.Sprintf("raw publish, window %d = the load's connections (for reference)", o.Conns), "msg/s", b64},
		{"reference: nginx → Go handler + one confirmed publish", "req/s", cRate},
		{"kvstack PUT p99", "ms", aP99},
		{"reference: nginx → Go handler + one confirmed publish, p99", "ms", cP99}}
	h.putRate = Summarise(aRate).Median
	rr := h.putRate / Summarise(bRate).Median
	cr := h.putRate / Summarise(cRate).Median
	sec.Targets = []Target{{Name: "PUT accepted / raw publish", Got: fmt.Sprintf("%.2f ×", rr), Want: "≥ 0.5 ×", Met: rr >= 0.5},
		{Name: "PUT accepted / nginx → handler + one confirmed publish", Got: fmt.Sprintf("%.2f ×", cr)}}
	return sec, nil
}

// startPutRef starts the PUT reference behind its own nginx on the GET-hit
// reference's addresses (stopped by then): the stub answering 202 after one
// confirmed publish to the scratch queue, which must be declared. Its
// response is as large as the app's 202 and its message as the app's.
func (h *harness) startPutRef(ctx context.Context, sec *Section) (string, func(), error) {
	o := h.o
	size, err := h.putResponseSize(ctx)
	if err != nil {
		return "", nil, err
	}
	// An add_key message of the load's PUTs (keys of a few digits).
	msgSize := len(opMessage("bench:put:100000", h.value).Body)
	sec.Setup += fmt.Sprintf(" Response body: %d bytes; message body: %d bytes.", size, msgSize)
	dir := filepath.Join(h.dir, "reference-put")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", nil, err
	}
	rc := h.api.RabbitMQ
	// The broker URL reaches the stub in its environment (RABBITMQ_URL, or
	// the same default), never on its command line. One stub process stands
	// for both replicas, hence both replicas' channels.
	_, stop, err := h.startBaseline(ctx, "put reference", dir, o.RefNginx, [2]string{o.RefStubA, o.RefStubB},
		"-size", fmt.Sprint(size), "-amqp-queue", scratchQueue, "-amqp-channels", fmt.Sprint(2*rc.PublishChannels),
		"-amqp-timeout", rc.PublishTimeout.String(), "-amqp-size", fmt.Sprint(msgSize))
	if err != nil {
		return "", nil, err
	}
	// The readiness GETs published too.
	h.pub.purge(scratchQueue)
	return "http://" + o.RefNginx, stop, nil
}

// putResponseSize is the size of the app's 202 to one PUT of the load's
// kind (its message joins the others in the stopped consumer's backlog).
func (h *harness) putResponseSize(ctx context.Context) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	body := `{"key":"bench:put:0","value":"` + h.value + `"}`
	req, _ := http.NewRequestWithContext(ctx, http.MethodPut, h.o.Nginx+"/api", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, fmt.Errorf("PUT probe: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, fmt.Errorf("PUT probe: %w", err)
	}
	if resp.StatusCode != http.StatusAccepted {
		return 0, fmt.Errorf("PUT probe: status %d: %s", resp.StatusCode, b)
	}
	return len(b), nil
}

// 4. The stack's consumer draining a backlog vs raw batched upserts.
func (h *harness) apply(ctx context.Context) (*Section, error) {
	o := h.o
	batch := h.cons.Consumer.BatchSize
	prefetch := h.cons.RabbitMQ.PrefetchFor(batch)
	// Enough messages for a drain of a second or more even in a smoke run.
	refN := max(o.ApplyN, 50_000)
	sec := &Section{Title: "Sustained apply by the consumer (PostgreSQL + Redis + ack)",
		Setup: fmt.Sprintf("The stack's consumer (batch size %d) is stopped, %s holds at least %d messages of fresh keys (the PUTs above, topped up by raw publishes), the consumer is started and timed from its first handled message to the last (kvstack_consumer_messages_total on its /metrics). "+
			"Baseline: the consumer's upsert statement (same SQL, unnest of %d rows, one transaction each) with pgx on a scratch copy of kv_store (schema kvbench), from 1 connection — the consumer applies one batch at a time. "+
			"Reference (no target): a plain amqp091-go consumer doing no work (manual ack, prefetch %d, one multiple-ack every %d deliveries) draining %d persistent messages of the same size from a scratch durable %s queue (%s, deleted afterwards), timed from its first delivery to its last ack.",
			batch, h.cons.RabbitMQ.QueueAdd, o.ApplyN, batch, prefetch, batch, refN, h.cons.RabbitMQ.QueueType, scratchQueue)}
	if err := scratchStore(ctx, h.pool); err != nil {
		return sec, err
	}
	var aRate, bRate, b4, noTrace, rawCons []float64
	for r := range o.Reps {
		var (
			a   float64
			n   int
			err error
		)
		// Someone else's `make up` may restart the stack's consumer between
		// the steps; such a repetition is run again, once.
		for try := 0; try < 2; try++ {
			if err = WaitQuiet(ctx); err != nil {
				return sec, err
			}
			if a, n, err = h.drainStack(ctx, r == 0 && try == 0); err == nil {
				break
			}
			Log("apply run %d: %v; again", r+1, err)
		}
		if err != nil {
			return sec, err
		}
		b, err := rawUpsert(ctx, h.pool, 1, batch, o.Dur/2, h.value, r)
		if err != nil {
			return sec, fmt.Errorf("raw upsert: %w", err)
		}
		b4r, err := rawUpsert(ctx, h.pool, 4, batch, o.Dur/2, h.value, 100+r)
		if err != nil {
			return sec, fmt.Errorf("raw upsert: %w", err)
		}
		_, _ = h.pool.Exec(ctx, `TRUNCATE kvbench.kv_store`)
		// For reference: the same binary and settings exporting no traces,
		// to show what the per-message spans cost.
		nt, _, err := h.drainChild(ctx, "consumer-notrace", o.ApplyN/2, "OTEL_TRACES_EXPORTER=none")
		if err != nil {
			return sec, err
		}
		// For reference: the broker delivering to a consumer that does
		// nothing, to show what the design's queue hop costs by itself.
		rcr, err := h.consumeRef(ctx, refN, prefetch, batch)
		if err != nil {
			return sec, err
		}
		Log("apply run %d: consumer %.0f msg/s over %d | raw upsert %.0f rows/s (4 clients %.0f) | no trace export %.0f msg/s | raw consume %.0f msg/s", r+1, a, n, b, b4r, nt, rcr)
		aRate, bRate, b4, noTrace = append(aRate, a), append(bRate, b), append(b4, b4r), append(noTrace, nt)
		rawCons = append(rawCons, rcr)
	}
	sec.Figures = []Figure{{"consumer apply", "msg/s", aRate}, {"raw batched upsert, 1 connection", "rows/s", bRate},
		{"raw batched upsert, 4 connections (for reference)", "rows/s", b4},
		{"consumer apply with OTEL_TRACES_EXPORTER=none (for reference)", "msg/s", noTrace},
		{fmt.Sprintf("reference: raw consume + ack (amqp091-go, prefetch %d, multiple-ack every %d)", prefetch, batch), "msg/s", rawCons}}
	h.applyRate = Summarise(aRate).Median
	rr := h.applyRate / Summarise(bRate).Median
	cr := h.applyRate / Summarise(rawCons).Median
	sec.Targets = []Target{{Name: "consumer apply / raw batched upsert", Got: fmt.Sprintf("%.2f ×", rr), Want: "≥ 0.5 ×", Met: rr >= 0.5},
		{Name: "consumer apply / raw consume + ack", Got: fmt.Sprintf("%.2f ×", cr)}}
	return sec, nil
}

// consumeRef fills the scratch queue with n messages like the app's and
// times rawConsume draining them with the stack consumer's prefetch and
// batch size. The queue is deleted afterwards, whatever happens.
func (h *harness) consumeRef(ctx context.Context, n, prefetch, batch int) (float64, error) {
	rc := h.cons.RabbitMQ
	if err := h.pub.declareScratch(scratchQueue, rc.QueueType); err != nil {
		return 0, fmt.Errorf("scratch queue: %w", err)
	}
	defer h.pub.deleteQueue(scratchQueue)
	h.pub.purge(scratchQueue)
	// The keys of fill's messages, so the bodies are the same size; they
	// never leave the scratch queue.
	if _, _, err := h.pub.publish(ctx, scratchQueue, 256, 5*time.Minute, n, func(i int) amqp.Publishing {
		return opMessage(fmt.Sprintf("bench:apply:%010d", i), h.value)
	}); err != nil {
		return 0, fmt.Errorf("filling %s: %w", scratchQueue, err)
	}
	have, err := h.pub.settle(scratchQueue, n)
	if err != nil {
		return 0, fmt.Errorf("depth of %s: %w", scratchQueue, err)
	}
	if have < n {
		return 0, fmt.Errorf("%s holds %d of the %d messages published", scratchQueue, have, n)
	}
	return rawConsume(ctx, rc.URLs()[0], scratchQueue, n, prefetch, batch, 2*time.Minute)
}

// 5. The same consumer with batch size 1, run by the harness.
func (h *harness) applyUnbatched(ctx context.Context) (*Section, error) {
	o := h.o
	sec := &Section{Title: "The same consumer with batch size 1",
		Setup: fmt.Sprintf("bin/consumer started by the harness with CONSUMER_BATCH_SIZE=1 (prefetch then 2) on %s, the stack's consumer stopped, draining %d messages of fresh keys; same environment (database, broker, tracing) as the stack's consumer.", o.Consumer1, o.Apply1N)}
	var rates []float64
	for r := range o.Reps {
		if err := WaitQuiet(ctx); err != nil {
			return sec, err
		}
		rate, n, err := h.drainChild(ctx, "consumer-batch1", o.Apply1N, "CONSUMER_BATCH_SIZE=1")
		if err != nil {
			return sec, err
		}
		Log("apply batch-1 run %d: %.0f msg/s over %d", r+1, rate, n)
		rates = append(rates, rate)
	}
	sec.Figures = []Figure{{"consumer apply, batch size 1", "msg/s", rates}}
	rr := h.applyRate / Summarise(rates).Median
	sec.Targets = []Target{{Name: "batched apply / batch size 1", Got: fmt.Sprintf("%.1f ×", rr), Want: "≥ 5 ×", Met: rr >= 5}}
	if err := h.startConsumer(ctx); err != nil {
		return sec, err
	}
	return sec, nil
}

// drainStack stops the stack's consumer, fills its queue with ApplyN
// messages, starts it and times its drain.
func (h *harness) drainStack(ctx context.Context, profile bool) (float64, int, error) {
	if err := h.stopConsumer(ctx); err != nil {
		return 0, 0, err
	}
	n, err := h.fill(ctx, h.o.ApplyN)
	if err != nil {
		return 0, 0, err
	}
	if err := h.startConsumer(ctx); err != nil {
		return 0, 0, err
	}
	wait := func() {}
	if profile {
		wait = h.profile(ctx, h.o.ConsumerPort, "consumer-apply-cpu", 3)
	}
	a, err := h.drain(ctx, h.o.ConsumerPort, n, 5*time.Minute)
	wait()
	return a, n, err
}

// drainChild fills the add queue to n messages, runs bin/consumer with the
// stack's environment plus env on the harness's own port until it has
// handled them, stops it, and returns its rate. The stack's consumer must
// be stopped.
func (h *harness) drainChild(ctx context.Context, name string, n int, env ...string) (float64, int, error) {
	o := h.o
	// Stopped again each time: someone else's `make up` may have restarted it.
	if err := h.stopConsumer(ctx); err != nil {
		return 0, 0, err
	}
	n, err := h.fill(ctx, n)
	if err != nil {
		return 0, 0, err
	}
	log := h.dir + "/" + name + ".log"
	c, err := startChild(name, log, append([]string{
		"KV_CONSUMER_ADDR=" + o.Consumer1, "KV_INSTANCE_ID=kvbench-" + name,
		"OTEL_EXPORTER_OTLP_ENDPOINT=" + envOr("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:"+envOr("KV_JAEGER_OTLP_HTTP_PORT", "4318")),
		"OTEL_EXPORTER_OTLP_PROTOCOL=" + envOr("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
	}, env...), o.Root+"/bin/consumer")
	if err != nil {
		return 0, 0, err
	}
	h.children = append(h.children, c)
	port := o.Consumer1[strings.LastIndex(o.Consumer1, ":")+1:]
	rate, err := h.drain(ctx, port, n, 5*time.Minute)
	c.stop(20 * time.Second)
	if err != nil {
		return 0, 0, fmt.Errorf("%w (log %s)", err, log)
	}
	return rate, n, nil
}

// 6. End-to-end lag at half the sustained PUT rate.
func (h *harness) lag(ctx context.Context) (*Section, error) {
	o := h.o
	if h.consumerStopped {
		if err := h.startConsumer(ctx); err != nil {
			return nil, err
		}
	}
	sustained := min(h.putRate, h.applyRate)
	rate := sustained / 2
	sec := &Section{Title: "End-to-end lag (accept → applied)",
		Setup: fmt.Sprintf("PUTs through nginx at a fixed %.0f/s (half the sustained write rate: the lower of the PUT accept rate, %.0f/s, and the apply rate, %.0f/s) for %s from %d connections, the stack's consumer running; "+
			"lag from the consumer's kvstack_consumer_lag_seconds histogram (apply time minus the accept timestamp), the difference of two scrapes around the run, p99 interpolated within its bucket.",
			rate, h.putRate, h.applyRate, o.LagDur, o.Conns)}
	if rate <= 0 {
		return sec, fmt.Errorf("no sustained rate measured")
	}
	url := "http://127.0.0.1:" + o.ConsumerPort + "/metrics"
	if err := h.waitEmpty(ctx, 2*time.Minute); err != nil {
		return sec, err
	}
	before, err := scrape(ctx, url)
	if err != nil {
		return sec, err
	}
	res := Open(ctx, o.Conns, o.LagDur, rate, h.putOp("bench:lag:"))
	if err := h.waitEmpty(ctx, 2*time.Minute); err != nil {
		return sec, err
	}
	time.Sleep(500 * time.Millisecond) // the last batch's metrics
	after, err := scrape(ctx, url)
	if err != nil {
		return sec, err
	}
	hist := histDelta(buckets(before, "kvstack_consumer_lag_seconds"), buckets(after, "kvstack_consumer_lag_seconds"))
	p99 := hist.Quantile(.99) * 1000
	within := hist.FractionWithin(0.25)
	Log("lag: PUT %s; lag observations %.0f p50 %.1fms p99 %.1fms, ≤250ms %.4f", res, hist.Total(), hist.Quantile(.5)*1000, p99, within)
	sec.Figures = []Figure{
		{"PUT rate achieved", "req/s", []float64{res.Rate()}},
		{"PUT p99 (accept)", "ms", []float64{ms(res.Quantile(.99))}},
		{"lag p50", "ms", []float64{hist.Quantile(.5) * 1000}},
		{"lag p99", "ms", []float64{p99}},
		{"share applied within 250 ms", "share", []float64{within}},
	}
	sec.Notes = append(sec.Notes, fmt.Sprintf("%.0f lag observations; one run (a fixed-rate run is its own repetition of %s)", hist.Total(), o.LagDur))
	sec.Targets = []Target{{Name: "end-to-end lag p99", Got: fmt.Sprintf("%.0f ms (%.2f%% within 250 ms)", p99, within*100), Want: "< 250 ms", Met: within >= 0.99}}
	return sec, nil
}

// waitEmpty waits until both work queues are empty.
func (h *harness) waitEmpty(ctx context.Context, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		a, err1 := h.pub.depth(h.cons.RabbitMQ.QueueAdd)
		d, err2 := h.pub.depth(h.cons.RabbitMQ.QueueDel)
		if err1 == nil && err2 == nil && a == 0 && d == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("the queues were not drained within %s", limit)
}

// 7. API memory: the peak, and the growth while streaming a large listing.
func (h *harness) memory(ctx context.Context) (*Section, error) {
	o := h.o
	sec := &Section{Title: "Memory of the API replicas",
		Setup: fmt.Sprintf("Peak: VmHWM of api1 and api2 (/proc/<pid>/status) after every scenario above. Listing: %d rows seeded under bench:all: in the stack's kv_store, then GET /api/all streamed through nginx and read to the end; "+
			"growth is the highest VmRSS sampled every 20 ms during the listing minus VmRSS before it, for the replica that served it.", o.ListRows)}
	var pids [2]int
	for i, p := range o.APIPorts {
		pid, err := pidOn(p)
		if err != nil {
			return sec, fmt.Errorf("api on :%s: %w", p, err)
		}
		pids[i] = pid
	}
	t0 := time.Now()
	if err := h.seed(ctx, "bench:all:", 0, o.ListRows); err != nil {
		return sec, err
	}
	_, _ = h.pool.Exec(ctx, `ANALYZE kv_store`)
	Log("memory: seeded %d rows in %s", o.ListRows, time.Since(t0).Round(time.Millisecond))
	var before, peak [2]int64
	for i, pid := range pids {
		before[i], _ = procKiB(pid, "VmRSS")
		peak[i] = before[i]
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
			}
			for i, pid := range pids {
				if v, err := procKiB(pid, "VmRSS"); err == nil && v > peak[i] {
					peak[i] = v
				}
			}
		}
	}()
	lctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	req, _ := http.NewRequestWithContext(lctx, http.MethodGet, o.Nginx+"/api/all", nil)
	t1 := time.Now()
	resp, err := http.DefaultClient.Do(req)
	var n int64
	if err == nil {
		n, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	took := time.Since(t1)
	close(stop)
	wg.Wait()
	if err != nil {
		return sec, fmt.Errorf("GET /api/all: %w", err)
	}
	if resp.StatusCode != 200 {
		return sec, fmt.Errorf("GET /api/all: status %d", resp.StatusCode)
	}
	growth := max(peak[0]-before[0], peak[1]-before[1])
	var hwm [2]int64
	for i, pid := range pids {
		hwm[i], _ = procKiB(pid, "VmHWM")
	}
	mib := func(k int64) float64 { return float64(k) / 1024 }
	Log("memory: listing %d bytes in %s; RSS before %v peak %v KiB; VmHWM %v KiB", n, took.Round(time.Millisecond), before, peak, hwm)
	sec.Figures = []Figure{
		{"api1 VmHWM", "MiB", []float64{mib(hwm[0])}}, {"api2 VmHWM", "MiB", []float64{mib(hwm[1])}},
		{"API RSS growth during GET /api/all", "MiB", []float64{mib(growth)}},
		{"listing size", "MiB", []float64{mib(n / 1024)}},
		{"listing rate", "rows/s", []float64{float64(o.ListRows) / took.Seconds()}},
	}
	sec.Notes = append(sec.Notes, fmt.Sprintf("VmRSS before the listing: api1 %.1f MiB, api2 %.1f MiB; highest during: %.1f / %.1f MiB", mib(before[0]), mib(before[1]), mib(peak[0]), mib(peak[1])))
	peakMiB := mib(max(hwm[0], hwm[1]))
	sec.Targets = []Target{
		{Name: "API RSS at peak (VmHWM, higher replica)", Got: fmt.Sprintf("%.1f MiB", peakMiB), Want: "< 100 MiB", Met: peakMiB < 100},
		{Name: fmt.Sprintf("API RSS growth over GET /api/all of %d keys", o.ListRows), Got: fmt.Sprintf("%.1f MiB", mib(growth)), Want: "< 50 MiB", Met: mib(growth) < 50},
	}
	return sec, nil
}
