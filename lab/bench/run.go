// Package bench is kvstack's benchmark harness (issue 7): it drives the
// running native stack through nginx with a Go load generator, measures
// each scenario beside a baseline of the machine's own parts in the same
// run (the GET hit, GET miss and PUT judged with every column at one rate:
// rate.go), and writes lab/bench/REPORT.md. Every load targets 127.0.0.1
// and every run is bounded in time (and count where it consumes data).
package bench

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/procfs"
	goredis "github.com/redis/go-redis/v9"

	"github.com/kvstack/kvstack/internal/config"
	"github.com/kvstack/kvstack/internal/msgsig"

	"github.com/kvstack/kvstack/internal/auth/mint"
	"github.com/kvstack/kvstack/lab/native"
	"github.com/kvstack/kvstack/lab/native/engines"
)

// Options sizes a run.
type Options struct {
	Root     string   // repository root
	Out      string   // report path
	Profiles string   // directory for CPU profiles of the app; "" for none
	Command  string   // how the run was started, for the report
	Smoke    bool     // a smoke run (no notes appended)
	Only     []string // scenario names to run (hit, miss, put, apply, apply1, lag, wait, memory); all when empty
	// Ports is the first of the ports the harness's own processes listen
	// on (its nginx, stubs, API variants and consumers): Ports … Ports+harnessPorts-1.
	Ports int
	// CompareAPI is another build of bin/api (say, main's) run beside the
	// variants as one more column: A/B runs of a change, alternated.
	CompareAPI string
	// Variants, when not empty, are the only API variants run (their
	// names, or those names as profile files spell them:
	// "as-shipped-run-by-the-harness"), for an A/B run of a change
	// beside the control alone; the report's rows that compare with a
	// variant left out stay empty.
	Variants []string
	// CompareConsumer is the same for bin/consumer, in the apply scenario.
	CompareConsumer string
	// Busy runs the scenarios without waiting for other people's tests to
	// end: the scale-out runs, which state the load average instead, and
	// smoke runs, whose figures mean nothing.
	Busy bool

	Reps int
	Dur  time.Duration // one measured run
	// Calib is each column's closed-loop run before the judged ones of
	// the GET hit, GET miss and PUT: its capacity, from which the
	// scenario's rate is chosen (JudgedRate).
	Calib time.Duration
	// Rate, when > 0, is the rate at which the GET hit, GET miss and PUT
	// judge their columns, instead of the one JudgedRate chooses from
	// their closed-loop runs (kvbench -rate; make bench never sets it);
	// the scale-out's GET hit then runs at it too.
	Rate     float64
	Warm     time.Duration // unmeasured warm-up before each scenario
	Conns    int
	ValueLen int

	HitKeys    int
	MissPerRun int // distinct never-read keys available to one run
	ApplyN     int // messages drained per consumer run
	Apply1N    int // messages drained per batch-size-1 run
	ListRows   int
	LagDur     time.Duration

	// From the stack's settings (stack.env, the environment).
	Nginx string // the edge, https://127.0.0.1:8080
	// EdgeTrust trusts the stack's CA (KV_TLS_CA): the edge's clients,
	// and those of the edges the harness renders, which use its
	// certificate.
	EdgeTrust    *tls.Config
	APIPorts     [2]string
	ConsumerPort string
	// The admin listeners (KV_ADMIN_ADDR, loopback): /metrics and pprof.
	APIAdminPorts     [2]string
	ConsumerAdminPort string
}

// DefaultPorts is where the harness's own processes listen unless
// KV_BENCH_PORT (or kvbench -ports) says otherwise.
const DefaultPorts = 18080

// Full is `make bench`.
func Full() Options {
	return Options{
		Reps: 3, Dur: 8 * time.Second, Calib: 4 * time.Second, Warm: 2 * time.Second, Conns: 64, ValueLen: 100,
		HitKeys: 1000, MissPerRun: 150_000, ApplyN: 60_000, Apply1N: 10_000,
		ListRows: 1_000_000, LagDur: 15 * time.Second, Ports: DefaultPorts,
	}
}

// ScaleOut is `make bench-ha`: Full, with drains of half the size, as
// there are nine of them a round.
func ScaleOut() Options {
	o := Full()
	o.ApplyN = 30_000
	return o
}

// Smoke is `make bench-smoke`: every scenario, a second or two each.
func Smoke() Options {
	return Options{
		Reps: 1, Dur: 1500 * time.Millisecond, Calib: time.Second, Warm: 300 * time.Millisecond, Conns: 16, ValueLen: 100,
		HitKeys: 100, MissPerRun: 20_000, ApplyN: 20_000, Apply1N: 300,
		ListRows: 20_000, LagDur: 2 * time.Second, Smoke: true, Busy: true, Ports: DefaultPorts,
	}
}

// port is the harness's own address n (0 to harnessPorts-1).
func (o Options) port(n int) string {
	if n < 0 || n >= harnessPorts {
		panic(fmt.Sprintf("harness port %d: the harness owns %d from KV_BENCH_PORT", n, harnessPorts))
	}
	return fmt.Sprintf("127.0.0.1:%d", o.Ports+n)
}

// harnessPorts is how many ports from Options.Ports the harness's own
// processes listen on: the stubs' below 10, the consumers' from 10 and
// their admin listeners from 20 (no variant runs meanwhile), the API
// variants' nginx and replicas from 20 (three each: 20–40 for six and
// -compare's), their api1s' admin listeners from 41 when profiled, the
// reference's first stub's pprof on 48 when profiled; in the
// scale-out, the edges of 2 and 4 replicas from 10 and 20, the replicas'
// admin listeners from 30.
const harnessPorts = 50

// fromStack takes the edge's and the processes' addresses from the stack.
func (o *Options) fromStack(v *stackView) {
	o.Nginx = native.EdgeURL(v.s)
	o.APIPorts = [2]string{v.s.Get("KV_API1_PORT"), v.s.Get("KV_API2_PORT")}
	o.ConsumerPort = v.s.Get("KV_CONSUMER_PORT")
	o.APIAdminPorts = [2]string{v.s.Get("KV_API1_ADMIN_PORT"), v.s.Get("KV_API2_ADMIN_PORT")}
	o.ConsumerAdminPort = v.s.Get("KV_CONSUMER_ADMIN_PORT")
}

// harness holds the connections and the state to restore.
type harness struct {
	o       Options
	stack   *stackView
	api     config.API
	cons    config.Consumer
	pool    *pgxpool.Pool
	rdb     goredis.UniversalClient // one server, or the HA topology's cluster
	pub     *rawPublisher
	clients Clients
	// token is an admin token of the stack's key (make token's), which
	// every request to the API outside the measured load carries, through
	// edge; each client of the load carries its own (clientTokens).
	token string
	edge  *http.Client
	dir   string // scratch files
	rep   *Report
	value string
	keys  *msgsig.Keys // sign what the bench queues, as the API does

	consumerStopped bool
	children        []*child

	putRate, applyRate float64 // medians, for the lag scenario
	keySeq             int64
}

const scratchQueue = "kvbench.scratch"

// Run runs every scenario and writes the report.
func Run(ctx context.Context, o Options) (err error) {
	h, err := newHarness(o)
	if err != nil {
		return err
	}
	if err := h.waitQuiet(ctx); err != nil {
		return err
	}
	closeRun, err := h.open(ctx, "kvbench-")
	defer closeRun()
	if err != nil {
		return err
	}
	if err := h.checkShipped(ctx); err != nil {
		return err
	}
	h.cleanData(ctx)
	if err := h.runSteps(ctx); err != nil {
		return err
	}
	h.cleanData(ctx)
	return h.write()
}

// open makes the run's scratch directory (named from prefix), connects to
// the stack, opens the load clients and describes the stack in the report.
// The function it returns, even with an error, undoes that: the clients
// closed, the stack left as it was found whatever happened, the directory
// removed.
func (h *harness) open(ctx context.Context, prefix string) (func(), error) {
	var err error
	if h.dir, err = os.MkdirTemp("", prefix); err != nil {
		return func() {}, err
	}
	undo := func() {
		h.clients.Close() // none when connect failed
		h.restore()
		os.RemoveAll(h.dir)
	}
	if err := h.connect(ctx); err != nil {
		return undo, err
	}
	tokens, err := h.clientTokens(h.o.Conns)
	if err != nil {
		return undo, err
	}
	h.clients = NewClients(tokens, h.o.EdgeTrust)
	h.describe(ctx)
	return undo, nil
}

// newHarness reads the stack's settings and the processes' configuration.
func newHarness(o Options) (*harness, error) {
	view, err := loadStack(o.Root)
	if err != nil {
		return nil, err
	}
	o.fromStack(view)
	if o.EdgeTrust, err = native.EdgeTLS(view.s); err != nil {
		return nil, err
	}
	h := &harness{o: o, stack: view, rep: &Report{Started: time.Now(), Command: o.Command, Baselines: true}, value: strings.Repeat("v", o.ValueLen)}
	if h.api, h.cons, err = view.configs(); err != nil {
		return nil, err
	}
	tok := benchToken
	if h.token, err = native.Token(view.s, tok); err != nil {
		return nil, err
	}
	edgeTransport := http.DefaultTransport.(*http.Transport).Clone()
	// A copy: an HTTP/2-capable transport adds "h2" to its configuration's
	// ALPN list, and nginx would then speak HTTP/2 to the HTTP/1.1
	// clients sharing it.
	edgeTransport.TLSClientConfig, edgeTransport.ForceAttemptHTTP2 = o.EdgeTrust.Clone(), false
	h.edge = &http.Client{Timeout: 5 * time.Minute, Transport: mint.Bearer(edgeTransport, h.token)}
	if h.keys, err = msgsig.ParseKeys(h.cons.Messages.Keys); err != nil {
		return nil, err
	}
	return h, nil
}

// Scenarios are the steps of a run, in order, by the names -only takes.
func (h *harness) scenarios() []scenario {
	return []scenario{
		{"hit", "GET cache hit", h.getHit},
		{"miss", "GET cache miss", h.getMiss},
		{"put", "PUT accepted", h.put},
		{"apply", "consumer apply (batched)", h.apply},
		{"apply1", "consumer apply (batch size 1)", h.applyUnbatched},
		{"lag", "end-to-end lag", h.lag},
		{"wait", "PUT ?wait=applied", h.waitApplied},
		{"memory", "memory", h.memory},
	}
}

type scenario struct {
	id, name string
	fn       func(context.Context) (*Section, error)
}

// runSteps runs the scenarios -only selects, keeping what each measured
// even when it failed.
func (h *harness) runSteps(ctx context.Context) error {
	for _, s := range h.scenarios() {
		if len(h.o.Only) > 0 && !slices.Contains(h.o.Only, s.id) {
			continue
		}
		if err := h.waitQuiet(ctx); err != nil {
			return err
		}
		Log("== %s", s.name)
		sec, err := s.fn(ctx)
		if sec != nil {
			h.rep.Sections = append(h.rep.Sections, sec)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
	}
	return nil
}

// write writes the report, and the engineers' reading of the figures kept
// beside the harness (lab/bench/NOTES.md) after a full run of the benchmark;
// then its figures as JSON beside it (JSONPath).
func (h *harness) write() error {
	h.rep.Took = time.Since(h.rep.Started)
	f, err := os.Create(h.o.Out)
	if err != nil {
		return err
	}
	defer f.Close()
	h.rep.Write(f)
	if notes, err := os.ReadFile(notesPath(h.o.Root)); err == nil && !h.o.Smoke && h.rep.Baselines {
		fmt.Fprintf(f, "\n---\n\n%s", notes)
	}
	if err := f.Close(); err != nil {
		return err
	}
	// The same figures for programs (kvbench -plan), beside the report.
	j, err := os.Create(JSONPath(h.o.Out))
	if err != nil {
		return err
	}
	defer j.Close()
	if err := h.rep.WriteJSON(j); err != nil {
		return err
	}
	Log("report written to %s and %s (%s)", h.o.Out, JSONPath(h.o.Out), h.rep.Took.Round(time.Second))
	return j.Close()
}

// notesPath is the engineers' reading of the figures, appended to a full
// report.
func notesPath(root string) string { return filepath.Join(root, "lab", "bench", "NOTES.md") }

// connect opens the harness's own connections, as the stack's
// administrator (DATABASE_URL, RABBITMQ_URL, the stack's Redis client): it
// makes and drops a scratch schema and queue, vacuums kv_store and deletes
// its rows, which the app's least-privileged users may not.
func (h *harness) connect(ctx context.Context) error {
	pc, err := pgxpool.ParseConfig(h.stack.s.Get("DATABASE_URL"))
	if err != nil {
		return err
	}
	// The baseline reads with as many connections as both API replicas.
	pc.MaxConns = 2 * h.api.Postgres.MaxConns
	if h.pool, err = pgxpool.NewWithConfig(ctx, pc); err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	if err := h.pool.Ping(ctx); err != nil {
		return fmt.Errorf("postgres %s: %w", h.api.Postgres.String(), err)
	}
	// The stack's checks' client (its default user, TLS to its own
	// engines): the harness reads and evicts entries the app's user may not.
	if h.rdb, err = engines.RedisClient(h.stack.s); err != nil {
		return fmt.Errorf("redis: %w", err)
	}
	if err := h.rdb.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redis %s: %w", h.api.Redis.Addr, err)
	}
	if h.pub, err = newRawPublisher(h.stack.s.Get("RABBITMQ_URL"), h.stack.s.Get("RABBITMQ_TLS_CA_FILE")); err != nil {
		return err
	}
	return nil
}

// restore puts the stack back: the stack's consumer running, the harness's
// processes, scratch queue and scratch schema gone.
func (h *harness) restore() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, c := range h.children {
		c.stop(15 * time.Second)
	}
	if h.consumerStopped {
		Log("restoring the stack's consumers")
		if err := h.startConsumer(ctx); err != nil {
			Log("could not restart the consumers: %v (run `make up`, or `make up-ha`)", err)
		} else if h.pub != nil {
			// The backlog of a run that stopped after the PUT scenario
			// (-only put) is the stack's to apply before the harness
			// leaves: a stack stopped with it queued leaves it on the
			// broker, where the next stack on the same engines, signing
			// with keys of its own, dead-letters all of it.
			Log("waiting for the stack's consumers to apply the PUT scenario's backlog")
			if err := h.waitEmpty(context.Background(), 10*time.Minute); err != nil {
				Log("%v: the stack's consumers are still applying it (make status)", err)
			}
		}
	}
	if h.pub != nil {
		h.pub.deleteQueue(scratchQueue)
		h.pub.Close()
	}
	if h.pool != nil {
		_, _ = h.pool.Exec(ctx, `DROP SCHEMA IF EXISTS kvbench CASCADE`)
		h.pool.Close()
	}
	if h.rdb != nil {
		h.rdb.Close()
	}
}

// cleanData deletes every key the harness wrote (all under "bench:"), in
// PostgreSQL and in the cache.
func (h *harness) cleanData(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	// COLLATE "C": ';' follows ':', so this is the prefix as a key range.
	if _, err := h.pool.Exec(ctx, `DELETE FROM kv_store WHERE key >= 'bench:' AND key < 'bench;'`); err != nil {
		Log("cleaning bench rows: %v", err)
	}
	h.evictCache(ctx, "bench:")
}

// evictCache removes the cached entries of keys with the prefix: on each
// master of a Redis Cluster, or on the one server.
func (h *harness) evictCache(ctx context.Context, prefix string) {
	match := h.api.Redis.KeyPrefix + prefix + "*"
	if cc, ok := h.rdb.(*goredis.ClusterClient); ok {
		_ = cc.ForEachMaster(ctx, func(ctx context.Context, node *goredis.Client) error {
			evictOn(ctx, node, match)
			return nil
		})
		return
	}
	evictOn(ctx, h.rdb, match)
}

// evictOn unlinks the keys matching match on one server, a pipelined
// UNLINK per key (one key each: a cluster node refuses keys of several
// slots in one command).
func evictOn(ctx context.Context, c goredis.Cmdable, match string) {
	iter := c.Scan(ctx, 0, match, 5000).Iterator()
	pipe := c.Pipeline()
	for iter.Next(ctx) {
		pipe.Unlink(ctx, iter.Val())
		if pipe.Len() == 5000 {
			_, _ = pipe.Exec(ctx)
		}
	}
	_, _ = pipe.Exec(ctx)
}

// describe records the machine, the versions and the settings.
func (h *harness) describe(ctx context.Context) {
	r := h.rep
	add := func(k, v string) { r.Machine = append(r.Machine, [2]string{k, v}) }
	add("CPUs (nproc)", strconv.Itoa(runtime.NumCPU()))
	proc, _ := procfs.NewDefaultFS()
	if mem, err := proc.Meminfo(); err == nil && mem.MemTotal != nil {
		add("memory", fmt.Sprintf("%d kB", *mem.MemTotal))
	}
	add("kernel", cmdOut("uname", "-sr"))
	if cpus, err := proc.CPUInfo(); err == nil && len(cpus) > 0 {
		add("CPU", cpus[0].ModelName)
	}
	add("Go", runtime.Version())
	var pgv string
	_ = h.pool.QueryRow(ctx, `SHOW server_version`).Scan(&pgv)
	add("PostgreSQL", pgv)
	if info, err := h.rdb.Info(ctx, "server").Result(); err == nil {
		for l := range strings.SplitSeq(info, "\n") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(l), "redis_version:"); ok {
				add("Redis", v)
			}
		}
	}
	if v, ok := h.pub.conn.Properties["version"].(string); ok {
		add("RabbitMQ", v)
	}
	add("nginx", strings.TrimPrefix(cmdOut("nginx", "-v"), "nginx version: "))
	add("load average at the start", loadAvg())

	set := func(k, v string) { r.Settings = append(r.Settings, [2]string{k, v}) }
	o := h.o
	set("repetitions", fmt.Sprintf("%d per scenario, every system of a scenario in turn, forward in odd repetitions and backward in even ones (no system always runs before another); %s per timed run after a %s warm-up", o.Reps, o.Dur, o.Warm))
	judged := fmt.Sprintf("%.0f %% of the slowest column's closed-loop rate in that run, rounded down to two figures", JudgedShare*100)
	if o.Rate > 0 {
		judged = fmt.Sprintf("%.0f/s, given (kvbench -rate)", o.Rate)
	}
	set("judged at one rate", fmt.Sprintf("GET hit, GET miss and PUT: each column (kvstack, the variants, the references, the baselines, the raw SELECT and the raw publish alike) first runs once in a closed loop for %s (its capacity: the throughput figures, and a CPU table not judged), "+
		"then every column runs its %d repetitions in an open loop at one offered rate, the scenario's: %s. A column more than %.0f %% short of that rate in a run is named, and the targets on it are not met. "+
		"Apply drains a backlog, each consumer as fast as it can; the lag and ?wait=applied scenarios run at half the sustained PUT rate (kvstack's closed loop)", o.Calib, o.Reps, judged, RateTolerance*100))
	set("load generator", fmt.Sprintf("Go, closed or open loop as above, %d connections (one per client, each from its own 127.0.0.x source address: the edge's per-client rate limit of %s burst %s applies to each), HTTP/1.1 keep-alive, target 127.0.0.1 only", o.Conns, h.stack.s.Get("NGINX_RATE_LIMIT"), h.stack.s.Get("NGINX_RATE_BURST")))
	set("values", fmt.Sprintf("%d bytes", o.ValueLen))
	set("engines", h.stack.engines())
	set("CPU", "utime + stime of each process and its descendants (/proc/<pid>/stat: nginx's workers, PostgreSQL's backends, RabbitMQ's port programs; a descendant that exits counts through its parent's cutime + cstime), read before and after each run, divided by the operations that run completed; the load generator (kvbench itself) is not counted")
	set("harness ports", fmt.Sprintf("%d–%d (KV_BENCH_PORT)", o.Ports, o.Ports+harnessPorts-1))
	// kvstack as shipped (issue 22): checkShipped held the running
	// processes to these before the first scenario.
	set("kvstack as shipped", "the kvstack column runs the defaults a user of docker compose or of the Helm chart's prod values gets, below; the run checked them in the environment of the running api1, api2 and consumer (lab/bench/shipped.go), and TestMakeBenchRunsTheShippedDefaults fails when make bench would run others")
	for _, s := range shippedSettings() {
		set(s.name, fmt.Sprintf("%s (%s)", s.value, s.where))
	}
	set("trace sampling", fmt.Sprintf("%s: parent-based, %g %% of the traces that start at the API, the consumer following the API's decision through the message; the native dev stack's default, 100 %%, is the \"%s\" variant (%s)", strings.Join(native.ProductionSampler, " "), productionRatio*100, colFull, strings.Join(fullSampler, " ")))
	set("auth", "on (KV_AUTH): every request carries a bearer token signed by the stack's key as `make token` signs (lab/native.Token), each load client its own subject (kvbench-1 … kvbench-N), verified by the API against its JWKS; the \"auth off\" variant runs KV_AUTH=off")
	set("TLS", fmt.Sprintf("at the edge: every request to nginx is HTTPS (%s, the stack's certificate, signed by its CA, KV_TLS_CA), the variants' and references' edges too; loopback HTTP behind it, as compose", h.o.Nginx))
	rc := h.cons.RabbitMQ
	set("RabbitMQ", fmt.Sprintf("queue type %s (RABBITMQ_QUEUE_TYPE; the references' and raw publishes' scratch queue %s is of the same type), persistent messages, API publish channels %d", rc.QueueType, scratchQueue, h.api.RabbitMQ.PublishChannels))
	cc := h.cons.Consumer
	set("consumer", fmt.Sprintf("batch size %d, batch wait %s, prefetch %d per queue", cc.BatchSize, cc.BatchWait, rc.PrefetchFor(cc.BatchSize)))
	set("PostgreSQL pool", fmt.Sprintf("PG_MAX_CONNS %d per process", h.api.Postgres.MaxConns))
	set("Redis pool", fmt.Sprintf("REDIS_POOL_SIZE %d per process", h.api.Redis.PoolSize))
}

func cmdOut(name string, args ...string) string {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil && len(out) == 0 {
		return "unknown"
	}
	return strings.TrimSpace(string(out))
}

// profile fetches a CPU profile of the process on port for secs seconds
// into the profiles directory, in the background.
func (h *harness) profile(ctx context.Context, port, name string, secs int) func() {
	if h.o.Profiles == "" || secs < 1 {
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		url := fmt.Sprintf("http://127.0.0.1:%s/debug/pprof/profile?seconds=%d", port, secs)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			Log("profile %s: %v", name, err)
			return
		}
		defer resp.Body.Close()
		_ = os.MkdirAll(h.o.Profiles, 0o755)
		f, err := os.Create(filepath.Join(h.o.Profiles, name+".pprof"))
		if err != nil {
			return
		}
		defer f.Close()
		_, _ = io.Copy(f, resp.Body)
	}()
	return func() { <-done }
}

// stubAdmin is where the reference's first stub serves pprof when the
// run takes profiles (harness port 48: the variants' api1s use 41–47),
// else "".
func (h *harness) stubAdmin() string {
	if h.o.Profiles == "" {
		return ""
	}
	return h.o.port(48)
}

// stubProfile is the profile name and admin port of scenario's reference
// (its first stub, served on stubAdmin); "" and "" when the run takes
// none.
func (h *harness) stubProfile(scenario string) (name, port string) {
	if h.o.Profiles == "" {
		return "", ""
	}
	return "ref-" + scenario + "-cpu", portOf(h.stubAdmin())
}

// stopConsumer stops the stack's consumers (the HA topology has two);
// restore restarts them.
func (h *harness) stopConsumer(ctx context.Context) error {
	h.consumerStopped = true
	for _, name := range h.stack.consumers() {
		if err := h.stack.stop(ctx, name); err != nil {
			return err
		}
	}
	return nil
}

func (h *harness) startConsumer(ctx context.Context) error {
	for _, name := range h.stack.consumers() {
		if err := h.stack.start(ctx, name); err != nil {
			return err
		}
	}
	h.consumerStopped = false
	return nil
}

// self is the harness's own binary (kvbench), which serves the stubs and
// the pipeline.
func (h *harness) self() (string, error) { return os.Executable() }

// benchToken is the bench's own requests' token: an admin of subject
// kvbench.
var benchToken = native.TokenRequest{Roles: []string{"admin"}, Subject: "kvbench", TTL: native.DefaultToken.TTL}

// clientTokens signs n admin tokens, of subjects kvbench-1 to kvbench-n:
// a load of n clients is n subjects to the API's per-subject limits, as
// it is n addresses to the edge's, so the bench measures the shipped
// limits and never meets them.
func (h *harness) clientTokens(n int) ([]string, error) {
	tokens := make([]string, n)
	for i := range tokens {
		req := benchToken
		req.Subject = fmt.Sprintf("kvbench-%d", i+1)
		tok, err := native.Token(h.stack.s, req)
		if err != nil {
			return nil, err
		}
		tokens[i] = tok
	}
	return tokens, nil
}
