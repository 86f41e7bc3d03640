package postgres_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/kvstack/kvstack/internal/postgres"
	"github.com/kvstack/kvstack/internal/postgres/pgtest"
)

// BenchmarkGet is a GET miss's read (issue 22): Store.Get on a pool made
// as the API makes its own (postgres.Open: otelpgx, statement_timeout),
// beside the raw primary-key SELECT the bench compares it with (a pool of
// pgx's defaults, no tracer), on one connection; untraced, and inside a
// recording span as a sampled request's. It reports the CPU per read of
// the client (client-µs/op: this process's, the harness's loop included)
// and of the server (server-µs/op: the connection's backend's utime +
// stime from /proc, this benchmark's alone even on a shared server; it
// must run on this machine).
//
//	go test ./internal/postgres -run '^$' -bench Get -benchtime 20000x -count 3
func BenchmarkGet(b *testing.B) {
	ctx := b.Context()
	url := pgtest.MustURL(b)
	const keys = 1000
	seed := pgtest.MustPoolAt(b, url)
	if _, err := seed.Exec(ctx, `INSERT INTO kv_store (key, value, last_updated, op_id, deleted)
		SELECT 'k' || g, repeat('v', 100), now(), gen_random_uuid(), false FROM generate_series(1, $1::int) g`, keys); err != nil {
		b.Fatal(err)
	}
	key := func(i int) string { return "k" + strconv.Itoa(i%keys+1) }

	recording := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(discard{}))
	b.Cleanup(func() { _ = recording.Shutdown(context.Background()) })

	open := func(b *testing.B, tp trace.TracerProvider) *pgxpool.Pool {
		cfg := postgres.DefaultConfig()
		cfg.URL, cfg.MaxConns, cfg.MinConns = url, 1, 0
		pool, err := postgres.Open(ctx, cfg, postgres.WithTracerProvider(tp))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(pool.Close)
		return pool
	}
	store := func(tp trace.TracerProvider, traced bool) func(*testing.B) {
		return func(b *testing.B) {
			pool := open(b, tp)
			s := postgres.NewStore(pool)
			tracer := tp.Tracer("bench")
			serverCPU(b, pool, func(i int) error {
				ctx := ctx
				var span trace.Span
				if traced {
					ctx, span = tracer.Start(ctx, "GET")
				}
				_, err := s.Get(ctx, key(i))
				if traced {
					span.End()
				}
				return err
			})
		}
	}
	b.Run("raw", func(b *testing.B) {
		pc, err := pgxpool.ParseConfig(url)
		if err != nil {
			b.Fatal(err)
		}
		pc.MaxConns = 1
		pool, err := pgxpool.NewWithConfig(ctx, pc)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(pool.Close)
		serverCPU(b, pool, func(i int) error {
			var (
				k, v    string
				ts      any
				id      [16]byte
				deleted bool
			)
			return pool.QueryRow(ctx, `SELECT key, value, last_updated, op_id, deleted FROM kv_store WHERE key = $1`, key(i)).
				Scan(&k, &v, &ts, &id, &deleted)
		})
	})
	b.Run("store-untraced", store(noop.NewTracerProvider(), false))
	b.Run("store-traced", store(recording, true))
}

// serverCPU runs read b.N times on pool's one connection and reports the
// CPU its backend and this process spent per read.
func serverCPU(b *testing.B, pool *pgxpool.Pool, read func(i int) error) {
	b.Helper()
	var pid int
	if err := pool.QueryRow(b.Context(), `SELECT pg_backend_pid()`).Scan(&pid); err != nil {
		b.Fatal(err)
	}
	for i := range 100 { // prepare, warm
		if err := read(i); err != nil {
			b.Fatal(err)
		}
	}
	before, clientBefore := procTicks(b, pid), selfCPU()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if err := read(i); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	ticks, client := procTicks(b, pid)-before, selfCPU()-clientBefore
	// USER_HZ is 100 on Linux: a tick is 10 ms.
	b.ReportMetric(float64(ticks)*10_000/float64(b.N), "server-µs/op")
	// The wall clock's ns/op counts the waits for the server and, on a
	// busy machine, for a core: the client's CPU is steadier.
	b.ReportMetric(float64(client.Microseconds())/float64(b.N), "client-µs/op")
}

// selfCPU is this process's user + system CPU so far.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// procTicks is pid's utime + stime, in clock ticks.
func procTicks(b *testing.B, pid int) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatalf("the backend's CPU (the server must run on this machine): %v", err)
	}
	// Fields after the command's closing parenthesis: state is the 3rd
	// field of stat, utime the 14th and stime the 15th.
	f := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+2:]))
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	return u + s
}

// discard is a span processor that drops what ends: spans built and
// ended as the API's are, without an exporter's cost.
type discard struct{}

func (discard) OnStart(context.Context, sdktrace.ReadWriteSpan) {}
func (discard) OnEnd(sdktrace.ReadOnlySpan)                     {}
func (discard) Shutdown(context.Context) error                  { return nil }
func (discard) ForceFlush(context.Context) error                { return nil }
