// Command kvchaos is kvstack's reliability campaign (issue 6): continuous
// writers and readers through a PRIVATE stack's nginx, one fault at a time,
// then drain and check that every acknowledged operation is reflected
// (last writer wins), that no cache entry differs from PostgreSQL, that no
// message was dead-lettered and that every process recovered.
//
// scripts/chaos.sh starts the private instances and runs it; its faults are
// scripts/chaos.sh ctl actions. Build: go build ./chaos.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	goredis "github.com/redis/go-redis/v9"
)

type settings struct {
	mode, nginx, ctl, dir, out, fuzz string
	keys, writers, readers           int
	pace, warm, post                 time.Duration
	drainTimeout                     time.Duration
	only                             string
}

func main() {
	var s settings
	flag.StringVar(&s.mode, "mode", "full", "full | short")
	flag.StringVar(&s.nginx, "nginx", "http://127.0.0.1:58080", "the private stack's nginx")
	flag.StringVar(&s.ctl, "ctl", "scripts/chaos.sh", "scripts/chaos.sh (ctl actions)")
	flag.StringVar(&s.dir, "dir", "tmp/chaos", "where the ledgers go")
	flag.StringVar(&s.out, "out", "", "write the report here (docs/RELIABILITY.md)")
	flag.StringVar(&s.fuzz, "fuzz", "not run", "the fuzz step's outcome, for the report")
	flag.StringVar(&s.only, "only", "", "comma-separated fault names (default: the mode's)")
	flag.IntVar(&s.keys, "keys", 0, "keys per fault (default by mode)")
	flag.IntVar(&s.writers, "writers", 0, "concurrent writers (default by mode)")
	flag.IntVar(&s.readers, "readers", 0, "concurrent readers (default by mode)")
	flag.DurationVar(&s.pace, "pace", 10*time.Millisecond, "pause between one client's requests")
	flag.DurationVar(&s.drainTimeout, "drain-timeout", 120*time.Second, "bound on waiting for the queues to drain")
	flag.Parse()
	short := s.mode == "short"
	def := func(p *int, full, short_ int) {
		if *p == 0 {
			*p = full
			if short {
				*p = short_
			}
		}
	}
	def(&s.keys, 200, 60)
	def(&s.writers, 8, 4)
	def(&s.readers, 4, 2)
	s.warm, s.post = 5*time.Second, 5*time.Second
	if short {
		s.warm, s.post = 2*time.Second, 3*time.Second
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, s); err != nil {
		fmt.Fprintln(os.Stderr, "kvchaos:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, s settings) error {
	pool, err := pgxpool.New(ctx, os.Getenv("DATABASE_URL"))
	if err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	defer pool.Close()
	rdb := goredis.NewClient(&goredis.Options{Addr: os.Getenv("REDIS_ADDR"), MaxRetries: -1})
	defer rdb.Close()
	ctl := func(ctx context.Context, args ...string) (string, error) {
		cctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(cctx, s.ctl, append([]string{"ctl"}, args...)...)
		cmd.Stderr = os.Stderr
		out, err := cmd.Output()
		if err != nil {
			return string(out), fmt.Errorf("ctl %s: %w", strings.Join(args, " "), err)
		}
		return string(out), nil
	}
	e := &env{s: s, pg: pool, rdb: rdb, ctl: ctl, http: newClient()}

	list := faults(s.mode)
	if s.only != "" {
		want := map[string]bool{}
		for _, n := range strings.Split(s.only, ",") {
			want[n] = true
		}
		var sel []fault
		for _, f := range faults("full") {
			if want[f.name] {
				sel = append(sel, f)
			}
		}
		list = sel
	}
	runID := time.Now().UTC().Format("150405")
	started := time.Now()
	var results []result
	for i, f := range list {
		if ctx.Err() != nil {
			break
		}
		fmt.Fprintf(os.Stderr, "==> chaos: [%d/%d] %s: %s\n", i+1, len(list), f.name, f.what)
		r := e.runFault(ctx, f, fmt.Sprintf("chaos-%s-%d-%s", runID, i, f.name))
		fmt.Fprintf(os.Stderr, "==> chaos: %s\n", r.summary())
		results = append(results, r)
	}
	rep := report{s: s, results: results, started: started, took: time.Since(started)}
	if s.out != "" {
		if err := os.WriteFile(s.out, []byte(rep.markdown()), 0o644); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "==> chaos: wrote %s\n", s.out)
	}
	short := filepath.Join(s.dir, "RELIABILITY-"+s.mode+".md")
	_ = os.WriteFile(short, []byte(rep.markdown()), 0o644)
	var failed []string
	for _, r := range results {
		if len(r.failures) > 0 {
			failed = append(failed, r.name+": "+strings.Join(r.failures, "; "))
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if len(results) != len(list) {
		return fmt.Errorf("%d of %d faults ran", len(results), len(list))
	}
	if len(failed) > 0 {
		return errors.New("checks failed:\n  " + strings.Join(failed, "\n  "))
	}
	fmt.Fprintf(os.Stderr, "==> chaos: %d faults, every check passed (%s)\n", len(results), time.Since(started).Round(time.Second))
	return nil
}

type env struct {
	s    settings
	pg   *pgxpool.Pool
	rdb  *goredis.Client
	ctl  ctlFunc
	http *http.Client
}

// pids: name -> pid of each process of the private stack ("-" when down).
func (e *env) pids(ctx context.Context) map[string]string {
	out, _ := e.ctl(ctx, "pids")
	m := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) == 2 {
			m[f[0]] = f[1]
		}
	}
	return m
}

// queues: name -> messages (ready + unacked) on the private node, and
// "name unacked" -> messages delivered but not acknowledged.
func (e *env) queues(ctx context.Context) (map[string]int, error) {
	out, err := e.ctl(ctx, "queues")
	if err != nil {
		return nil, err
	}
	m := map[string]int{}
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) == 3 {
			n, err1 := strconv.Atoi(f[1])
			u, err2 := strconv.Atoi(f[2])
			if err1 == nil && err2 == nil {
				m[f[0]], m[f[0]+" unacked"] = n, u
			}
		}
	}
	return m, nil
}

// healthy: every replica and the consumer answer /readyz.
func (e *env) ready(ctx context.Context, addrs []string) bool {
	for _, a := range addrs {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+a+"/readyz", nil)
		c := http.Client{Timeout: time.Second}
		resp, err := c.Do(req)
		if err != nil {
			return false
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return false
		}
	}
	return true
}

func envPort(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
