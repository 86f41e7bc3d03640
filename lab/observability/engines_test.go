package observability

import (
	"bytes"
	"io"
	"net/http"
	"os"
	"os/exec"
	"testing"

	"github.com/kvstack/kvstack/internal/postgres/pgtest"
	"github.com/kvstack/kvstack/lab/nginxtest"
)

// startExporter runs an exporter on a free loopback port until the test
// ends; scrape waits for it to answer and reads its metrics.
func startExporter(t *testing.T, env []string, name string, args ...string) (scrape func() map[string]float64, log *bytes.Buffer) {
	t.Helper()
	nginxtest.RequireCommands(t, name)
	listen := nginxtest.FreeAddr(t)
	cmd := exec.Command(name, append(args, listenFlag[name]+"="+listen)...)
	cmd.Env = append(os.Environ(), env...)
	log = &bytes.Buffer{}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nginxtest.Stop(cmd) })
	scrape = func() map[string]float64 {
		t.Helper()
		var text string
		nginxtest.WaitFor(t, name+" on "+listen, func() error {
			resp, err := http.Get("http://" + listen + "/metrics")
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			text = string(b)
			return err
		})
		// The series of one-series families (those the tests read).
		out := map[string]float64{}
		for name, f := range families(t, text) {
			if len(f.GetMetric()) == 1 {
				out[name] = sample(f.GetMetric()[0])
			}
		}
		return out
	}
	return scrape, log
}

var listenFlag = map[string]string{
	"prometheus-postgres-exporter": "--web.listen-address",
	"prometheus-redis-exporter":    "-web.listen-address",
}

// The PostgreSQL exporter with kvstack's queries
// (postgres-exporter/queries.yml) on the real server, read-only, on a
// migrated schema of its own: every query runs, and kv_store's figures and
// the standby count are there beside the built-in metrics the dashboard
// and alerts read.
func TestPostgresExporterQueries(t *testing.T) {
	url := pgtest.MustURL(t) // search_path: a fresh schema holding kv_store
	scrape, log := startExporter(t, []string{"DATA_SOURCE_NAME=" + url}, "prometheus-postgres-exporter",
		"--extend.query-path=../../observability/postgres-exporter/queries.yml", "--log.level=warn")
	got := scrape()
	for _, name := range []string{
		"pg_up", "pg_kv_store_live_tuples", "pg_kv_store_dead_tuples", "pg_kv_store_table_bytes",
		"pg_kv_store_index_bytes", "pg_kv_store_last_vacuum_timestamp_seconds", "pg_replication_standbys",
		"pg_settings_max_connections", "pg_settings_superuser_reserved_connections",
	} {
		if _, ok := got[name]; !ok {
			t.Errorf("no %s (exporter log: %s)", name, log)
		}
	}
	if got["pg_up"] != 1 || got["pg_exporter_last_scrape_error"] != 0 {
		t.Errorf("pg_up %v, pg_exporter_last_scrape_error %v: want 1 and 0 (exporter log: %s)",
			got["pg_up"], got["pg_exporter_last_scrape_error"], log)
	}
	if got["pg_kv_store_table_bytes"] <= 0 {
		t.Errorf("pg_kv_store_table_bytes %v: want the size of the migrated table", got["pg_kv_store_table_bytes"])
	}
}

// The Redis exporter on the real server (REDIS_ADDR), read-only: up, with
// the figures the dashboard and the eviction alert read.
func TestRedisExporter(t *testing.T) {
	if testing.Short() {
		t.Skip("needs Redis; not run with -short (make test runs it)")
	}
	addr := os.Getenv("REDIS_ADDR")
	if addr == "" {
		addr = "127.0.0.1:6379"
	}
	scrape, log := startExporter(t, nil, "prometheus-redis-exporter", "-redis.addr=redis://"+addr)
	got := scrape()
	if got["redis_up"] != 1 {
		t.Fatalf("redis_up %v: Redis at %s unreachable from the exporter (log: %s)", got["redis_up"], addr, log)
	}
	for _, name := range []string{
		"redis_memory_used_bytes", "redis_memory_max_bytes", "redis_evicted_keys_total",
		"redis_keyspace_hits_total", "redis_keyspace_misses_total", "redis_connected_clients", "redis_blocked_clients",
	} {
		if _, ok := got[name]; !ok {
			t.Errorf("no %s", name)
		}
	}
}
