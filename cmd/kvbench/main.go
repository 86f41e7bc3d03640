// Command kvbench is kvstack's benchmark harness (issue 7): `make bench`
// runs every scenario beside its baseline against the running native stack
// and writes bench/REPORT.md; `make bench-smoke` runs each for a second or
// two to prove the harness works. See package bench.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/kvstack/kvstack/bench"
	"github.com/kvstack/kvstack/internal/config"
	"github.com/kvstack/kvstack/internal/rabbitmq"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	if len(os.Args) > 1 && os.Args[1] == "stub" {
		err = stub(ctx, os.Args[2:])
	} else {
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
	out := fs.String("out", "", "report path (default bench/REPORT.md; with -smoke, a temporary file)")
	profiles := fs.String("profiles", "", "directory for CPU profiles of the API and consumer (none when empty)")
	root := fs.String("root", ".", "repository root")
	only := fs.String("only", "", "comma-separated scenarios to run: hit,miss,put,apply,apply1,lag,memory (default all)")
	_ = fs.Parse(args)
	o := bench.Full()
	if *smoke {
		o = bench.Smoke()
	}
	o.Root, o.Profiles = *root, *profiles
	o.Command = "kvbench " + strings.Join(args, " ")
	o.Out = *out
	if *only != "" {
		o.Only = strings.Split(*only, ",")
	}
	if o.Out == "" {
		if *smoke {
			f, err := os.CreateTemp("", "kvbench-smoke-*.md")
			if err != nil {
				return err
			}
			f.Close()
			o.Out = f.Name()
		} else {
			o.Out = *root + "/bench/REPORT.md"
		}
	}
	return bench.Run(ctx, o)
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
	_ = fs.Parse(args)
	rs := bench.StubRedis{Addr: *redis, DB: *db, PoolSize: *pool, Key: *key}
	if rs.Addr != "" {
		if rs.Key == "" || *fields == "" {
			return fmt.Errorf("stub: -redis needs -redis-key and -redis-fields")
		}
		rs.Fields = strings.Split(*fields, ",")
		// From the environment, as the API takes it: never on a command line.
		rs.Password = os.Getenv("REDIS_PASSWORD")
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
	return bench.ServeStub(ctx, strings.Split(*addr, ","), *size, rs, ra)
}
