// Command kvbench is kvstack's benchmark harness (issue 7): `make bench`
// runs every scenario beside its baseline against the running native stack
// and writes lab/bench/REPORT.md; `make bench-smoke` runs each for a second or
// two to prove the harness works. See package bench.
package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/kvstack/kvstack/internal/config"
	"github.com/kvstack/kvstack/internal/rabbitmq"
	"github.com/kvstack/kvstack/lab/bench"
	"github.com/kvstack/kvstack/lab/native"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch {
	case len(os.Args) > 1 && os.Args[1] == "stub":
		err = stub(ctx, os.Args[2:])
	case len(os.Args) > 1 && os.Args[1] == "pipeline":
		err = pipeline(ctx, os.Args[2:])
	default:
		err = run(ctx, os.Args[1:])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "kvbench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("kvbench", flag.ExitOnError)
	smoke := fs.Bool("smoke", false, "a short run of every scenario, proving the harness works")
	scaleOut := fs.Bool("scaleout", false, "the scale-out scenarios on the HA topology (make up-ha): apply with 1, 2 and 4 consumers, GET hit with 2 and 4 replicas (-only apply,hit)")
	out := fs.String("out", "", "report path (default lab/bench/REPORT.md, with -scaleout lab/bench/SCALEOUT.md; with -smoke, a temporary file)")
	profiles := fs.String("profiles", "", "directory for CPU profiles of the API and consumer (none when empty)")
	root := fs.String("root", "", "repository root (default: the directory holding stack.env, from here upwards)")
	only := fs.String("only", "", "comma-separated scenarios to run: hit,miss,put,apply,apply1,lag,wait,memory (default all)")
	ports := fs.Int("ports", defaultPorts(), "first of the 50 ports the harness's own nginx, stubs, API variants and consumers listen on (default KV_BENCH_PORT, else 18080)")
	compare := fs.String("compare-api", "", "another build of bin/api (say, main's) to run as one more column of the GET hit and PUT scenarios, alternated with the rest")
	variants := fs.String("variants", "", "comma-separated API variants to run beside kvstack, by name or as a profile's file name spells it (as-shipped-run-by-the-harness, 100pct-sampling, tracing-off, tracing-and-access-log-off, auth-off, tls-off-at-the-edge); default all")
	compareConsumer := fs.String("compare-consumer", "", "another build of bin/consumer to run as one more column of the apply scenario")
	busy := fs.Bool("busy", false, "run without waiting for other people's tests to finish (their load is then in the figures; -smoke implies it)")
	reps := fs.Int("reps", 0, "repetitions per scenario (default: 3, or 1 with -smoke)")
	rate := fs.Float64("rate", 0, "judge the GET hit, GET miss and PUT at this many requests a second, every column, instead of at the rate chosen from their closed-loop runs (70 % of the slowest column's)")
	dur := fs.Duration("dur", 0, "one measured run (default: 8s, or 1.5s with -smoke)")
	planMode := fs.Bool("plan", false, "print the capacity plan computed from the last report's figures (lab/bench/REPORT.json, else REPORT.md; checked against SCALEOUT beside it), run nothing (make bench-plan)")
	pf := planFlags(fs)
	_ = fs.Parse(args)
	if *planMode {
		return pf.run(os.Stdout, *root)
	}
	o := bench.Full()
	if *scaleOut {
		o = bench.ScaleOut()
	}
	if *smoke {
		o = bench.Smoke()
	}
	if *busy {
		o.Busy = true
	}
	if *reps > 0 {
		o.Reps = *reps
	}
	if *dur > 0 {
		o.Dur = *dur
	}
	o.Rate = *rate
	if *root == "" {
		var err error
		if *root, err = native.FindRoot(); err != nil {
			return err
		}
	}
	o.Root, o.Profiles, o.Ports, o.CompareAPI, o.CompareConsumer = *root, *profiles, *ports, *compare, *compareConsumer
	o.Command = "kvbench " + strings.Join(args, " ")
	o.Out = *out
	if *only != "" {
		o.Only = strings.Split(*only, ",")
	}
	if *variants != "" {
		o.Variants = strings.Split(*variants, ",")
		if err := bench.CheckVariants(o.Variants); err != nil {
			return err
		}
	}
	if o.Out == "" {
		if *smoke {
			f, err := os.CreateTemp("", "kvbench-smoke-*.md")
			if err != nil {
				return err
			}
			f.Close()
			o.Out = f.Name()
		} else if *scaleOut {
			o.Out = *root + "/lab/bench/SCALEOUT.md"
		} else {
			o.Out = *root + "/lab/bench/REPORT.md"
		}
	}
	if *scaleOut {
		return bench.RunScaleOut(ctx, o)
	}
	return bench.Run(ctx, o)
}

func defaultPorts() int {
	if n, err := strconv.Atoi(os.Getenv("KV_BENCH_PORT")); err == nil && n > 0 {
		return n
	}
	return bench.DefaultPorts
}

// pipeline is the apply reference (run by the harness itself): the least
// code doing a consumer's work, from the environment's PostgreSQL, Redis
// and RabbitMQ, as the consumer reads them.
func pipeline(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("pipeline", flag.ExitOnError)
	addr := fs.String("addr", "127.0.0.1:18091", "serves /metrics (kvbench_pipeline_messages_total)")
	queue := fs.String("queue", "kvbench.scratch", "the queue to drain")
	prefetch := fs.Int("prefetch", 200, "AMQP prefetch")
	batch := fs.Int("batch", 100, "messages per batch")
	wait := fs.Duration("wait", 20*time.Millisecond, "a batch's longest wait for more messages")
	table := fs.String("table", "kvbench.kv_store", "a scratch copy of kv_store")
	prefix := fs.String("redis-prefix", "kv:kvbench:pipeline:", "the cache entries' key prefix")
	_ = fs.Parse(args)
	// From the environment, as the consumer takes them: the URLs hold
	// passwords, which never go on a command line.
	cfg, err := config.Load[config.Consumer]()
	if err != nil {
		return fmt.Errorf("pipeline: %w", err)
	}
	rc := cfg.Redis
	rc.KeyPrefix = *prefix
	err = bench.RunPipeline(ctx, bench.Pipeline{
		Addr: *addr, AMQPURL: cfg.RabbitMQ.URLs()[0], AMQPCAFile: cfg.RabbitMQ.TLSCAFile, Queue: *queue, Prefetch: *prefetch, Batch: *batch, Wait: *wait,
		DatabaseURL: cfg.Postgres.URL, Table: *table, Redis: rc, Channel: "kvbench_pipeline",
	})
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// stub serves the baseline's minimal handler (run by the harness itself);
// with -redis, the reference handler that reads Redis once per request;
// with -amqp-queue, the one that answers 202 after one confirmed publish.
func stub(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("stub", flag.ExitOnError)
	addr := fs.String("addr", "127.0.0.1:18081", "comma-separated listen addresses")
	size := fs.Int("size", 64, "response body size in bytes")
	redis := fs.String("redis", "", "Redis address: HMGET -redis-key before each answer (none when empty)")
	db := fs.Int("redis-db", 0, "Redis database")
	pool := fs.Int("redis-pool", 32, "Redis connection pool size")
	key := fs.String("redis-key", "", "the Redis hash to read")
	fields := fs.String("redis-fields", "", "comma-separated fields of -redis-key to read")
	queue := fs.String("amqp-queue", "", "an existing queue: publish one persistent message to it and wait for the confirm before each answer, a 202 (none when empty)")
	amqpURL := fs.String("amqp", "", "RabbitMQ URL for -amqp-queue (default RABBITMQ_URL, as the API reads it)")
	channels := fs.Int("amqp-channels", 16, "confirm-mode channels on the one connection")
	timeout := fs.Duration("amqp-timeout", 2*time.Second, "bound on one publish, from the call to the confirm")
	msgSize := fs.Int("amqp-size", 256, "message body size in bytes")
	pprofAddr := fs.String("pprof", "", "serve /debug/pprof/ on this address too (none when empty): the harness profiles a reference as it does a replica")
	miss := fs.Bool("miss", false, "answer a cache miss: one primary-key SELECT of ?key= and one fill of the cache, on the API's PostgreSQL and Redis as its environment configures them (DATABASE_URL, PG_MAX_CONNS, REDIS_*)")
	_ = fs.Parse(args)
	rs := bench.StubRedis{Addr: *redis, DB: *db, PoolSize: *pool, Key: *key}
	if rs.Addr != "" {
		if rs.Key == "" || *fields == "" {
			return fmt.Errorf("stub: -redis needs -redis-key and -redis-fields")
		}
		rs.Fields = strings.Split(*fields, ",")
		// From the environment, as the API takes it: never on a command line.
		rs.Username, rs.Password = os.Getenv("REDIS_USERNAME"), os.Getenv("REDIS_PASSWORD")
	}
	var sm bench.StubMiss
	if *miss {
		// From the environment, as the API takes it: the URLs hold passwords.
		c, err := config.Load[config.API]()
		if err != nil {
			return fmt.Errorf("stub: %w", err)
		}
		sm = bench.StubMiss{Postgres: c.Postgres, Redis: c.Redis}
	}
	ra := bench.StubAMQP{URL: *amqpURL, Queue: *queue, Channels: *channels, Timeout: *timeout, Size: *msgSize}
	if ra.Queue != "" && ra.URL == "" {
		// From the environment, as the API takes it: the URL holds the
		// password, which never goes on a command line.
		c, err := config.Load[rabbitmq.Config]()
		if err != nil {
			return fmt.Errorf("stub: %w", err)
		}
		ra.URL = c.URLs()[0] // one node is enough for a reference
	}
	if ra.Queue == "" && ra.URL != "" {
		return fmt.Errorf("stub: -amqp needs -amqp-queue")
	}
	if *pprofAddr != "" {
		mux := http.NewServeMux()
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		srv := &http.Server{Addr: *pprofAddr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = srv.ListenAndServe() }()
		defer srv.Close()
	}
	return bench.ServeStub(ctx, strings.Split(*addr, ","), *size, rs, ra, sm)
}
