// Command kvchaos is kvstack's reliability campaign (issue 6): continuous
// writers and readers through a PRIVATE stack's nginx, one fault at a time,
// then drain and check that every acknowledged operation is reflected
// (last writer wins), that no cache entry differs from PostgreSQL, that no
// message was dead-lettered and that every process recovered.
//
// It starts the private stack itself (PostgreSQL, Redis, RabbitMQ and
// kvstack's processes under a supervisord of its own: lab/chaos/stack.go),
// injects its faults through that supervisor, and tears it all down.
// make chaos / make chaos-short run it: go run ./chaos -mode full|short.
// make chaos-ha runs -mode ha: the HA topology's faults (lab/chaos/hastack.go,
// lab/chaos/hafaults.go) on a private HA stack, written into the same report
// in a section of its own. make dr-drill runs -mode dr: the disaster-recovery
// drill (lab/chaos/drill.go), a point-in-time restore under load on a private
// stack whose PostgreSQL archives with pgBackRest, in a section of its own;
// make dr-drill-ha runs -mode dr-ha, the same drill on a private HA stack.
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
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	goredis "github.com/redis/go-redis/v9"

	"github.com/kvstack/kvstack/lab/native"
	"github.com/kvstack/kvstack/lab/native/engines"
)

type settings struct {
	mode, nginx, dir, engineDir, out, fuzz string
	keys, writers, readers                 int
	pace, warm, post                       time.Duration
	drainTimeout, fuzzTime                 time.Duration
	only                                   string
	repeat                                 int
}

func main() {
	var s settings
	flag.StringVar(&s.mode, "mode", "full", "full | short | ha (the HA topology's faults) | dr (the disaster-recovery drill: backup, accident, point-in-time restore) | dr-ha (the drill on the HA topology)")
	flag.StringVar(&s.dir, "dir", "", "ledgers, the private stack's build and state, relative to the repository root (default tmp/chaos, tmp/chaos-ha, tmp/dr-drill, tmp/dr-drill-ha)")
	flag.StringVar(&s.engineDir, "engines", "", "the private engines' data, removed afterwards (default /tmp/kvchaos, /tmp/kvchaos-ha, /tmp/kvdr, /tmp/kvdr-ha)")
	flag.StringVar(&s.out, "out", "", "write the report here, relative to the repository root (docs/RELIABILITY.md)")
	flag.DurationVar(&s.fuzzTime, "fuzztime", 15*time.Second, "full mode: run every fuzz target this long first (0: skip)")
	flag.StringVar(&s.only, "only", "", "comma-separated fault names (default: the mode's)")
	flag.IntVar(&s.repeat, "repeat", 1, "run each selected fault this many times (a new fault's check, before it lands)")
	flag.IntVar(&s.keys, "keys", 0, "keys per fault (default by mode)")
	flag.IntVar(&s.writers, "writers", 0, "concurrent writers (default by mode)")
	flag.IntVar(&s.readers, "readers", 0, "concurrent readers (default by mode)")
	flag.DurationVar(&s.pace, "pace", 10*time.Millisecond, "pause between one client's requests")
	flag.DurationVar(&s.drainTimeout, "drain-timeout", 120*time.Second, "bound on waiting for the queues to drain")
	flag.Parse()
	short := s.mode == "short"
	switch s.mode {
	case "ha":
		s.dir, s.engineDir = or(s.dir, "tmp/chaos-ha"), or(s.engineDir, "/tmp/kvchaos-ha")
	case "dr":
		s.dir, s.engineDir = or(s.dir, "tmp/dr-drill"), or(s.engineDir, "/tmp/kvdr")
	case "dr-ha":
		s.dir, s.engineDir = or(s.dir, "tmp/dr-drill-ha"), or(s.engineDir, "/tmp/kvdr-ha")
	}
	s.dir, s.engineDir = or(s.dir, "tmp/chaos"), or(s.engineDir, "/tmp/kvchaos")
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
	if err := campaign(ctx, s); err != nil {
		fmt.Fprintln(os.Stderr, "==> chaos: ERROR:", err)
		os.Exit(1)
	}
}

// campaign takes the machine's campaign lock, waits for a benchmark to
// end, runs the fuzz step (full mode), starts the private stack, runs the
// faults and tears the stack down whatever happens.
func campaign(ctx context.Context, s settings) (err error) {
	started := time.Now()
	root, err := native.FindRoot()
	if err != nil {
		return err
	}
	s.dir = fromRoot(root, s.dir)
	if s.out != "" {
		s.out = fromRoot(root, s.out)
	}
	if err := os.MkdirAll(s.dir, 0o755); err != nil {
		return err
	}
	// One lock for every mode and every checkout of the machine: two
	// campaigns would disturb each other's figures, and two of one mode
	// share their ports and engines' directory (the second's start removes
	// the first's engines).
	unlock, err := lock(ctx, machineLock)
	if err != nil {
		return err
	}
	defer unlock()
	if err := waitNoBench(ctx); err != nil {
		return err
	}
	s.fuzz = "not run"
	if s.mode == "full" && s.fuzzTime > 0 {
		s.fuzz = fuzz(ctx, root, s)
	}
	start := startPrivate
	switch s.mode {
	case "ha":
		start = startHA
	case "dr":
		start = startDR
	case "dr-ha":
		start = startDRHA
	}
	c, err := start(ctx, root, s.dir, s.engineDir, os.Stderr)
	defer func() {
		if cerr := c.close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("tear down: %w", cerr))
		}
		fmt.Fprintf(os.Stderr, "==> chaos: private instances and stack torn down; campaign (%s) took %s\n", s.mode, time.Since(started).Round(time.Second))
	}()
	if err != nil {
		return fmt.Errorf("private stack: %w", err)
	}
	s.nginx = native.EdgeURL(c.s)
	if s.mode == "dr" || s.mode == "dr-ha" {
		return drill(ctx, s, c)
	}
	return run(ctx, s, c)
}

// fuzz runs every fuzz target for s.fuzzTime (make fuzz) and says how it
// went, for the report; a crasher is left under the package's testdata.
func fuzz(ctx context.Context, root string, s settings) string {
	fmt.Fprintf(os.Stderr, "==> chaos: fuzz: every target for %s (make fuzz)\n", s.fuzzTime)
	logPath := filepath.Join(s.dir, "fuzz.log")
	cmd := exec.CommandContext(ctx, filepath.Join(root, "lab", "scripts", "fuzz.sh"), "./internal/...")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "FUZZTIME="+s.fuzzTime.String())
	out, err := cmd.CombinedOutput()
	_ = os.WriteFile(logPath, out, 0o644)
	if err != nil {
		fmt.Fprintf(os.Stderr, "==> chaos: fuzz: FAILED (%v); see %s; the crasher is under the package's testdata/fuzz (git status)\n", err, logPath)
		return "failed"
	}
	targets := regexp.MustCompile(`(?m)^==> fuzz \S+ \S+ for `).FindAll(out, -1)
	return fmt.Sprintf("passed (%d targets, %s each)", len(targets), s.fuzzTime)
}

// newEnv connects to the private stack: its PostgreSQL through
// DATABASE_URL (the primary, on the HA topology), its Redis (one address:
// the node; several: the Redis Cluster), and the load's HTTP client.
func newEnv(ctx context.Context, s settings, c *private) (*env, func(), error) {
	pool, err := pgxpool.New(ctx, c.s.Get("DATABASE_URL"))
	if err != nil {
		return nil, nil, fmt.Errorf("postgres: %w", err)
	}
	client, err := newClient(c.s)
	if err != nil {
		pool.Close()
		return nil, nil, err
	}
	// The stack's checks' client: its default user, over TLS to the
	// engines the campaign locks.
	rdb, err := engines.RedisClient(c.s)
	if err != nil {
		client.CloseIdleConnections()
		pool.Close()
		return nil, nil, fmt.Errorf("redis: %w", err)
	}
	return &env{s: s, c: c, pg: pool, rdb: rdb, http: client}, func() { rdb.Close(); pool.Close() }, nil
}

func run(ctx context.Context, s settings, c *private) error {
	e, closeEnv, err := newEnv(ctx, s, c)
	if err != nil {
		return err
	}
	defer closeEnv()
	list := repeated(selectFaults(s.mode, s.only), s.repeat)
	runID := time.Now().UTC().Format("150405")
	started := time.Now()
	var failed []string
	// The cache's own key names as client keys, before the faults and
	// read back after them (internalnames.go).
	internal, err := e.writeInternalNames(ctx, runID)
	if err != nil {
		failed = append(failed, "the cache's own key names as client keys: "+err.Error())
	}
	fmt.Fprintf(os.Stderr, "==> chaos: %d client keys named as the cache's own (%s): applied, read back from the cache, nothing dead-lettered: %v (%s)\n",
		len(internal), internalKeys(internal), err == nil, time.Since(started).Round(time.Millisecond))
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
	err = e.checkInternalNames(ctx, internal)
	if err != nil {
		failed = append(failed, "the cache's own key names as client keys, after the faults: "+err.Error())
	}
	fmt.Fprintf(os.Stderr, "==> chaos: after the faults, the %d client keys named as the cache's own read back from the cache: %v\n", len(internal), err == nil)
	rep := report{s: s, results: results, started: started, took: time.Since(started)}
	decided, checks := historiesDecided(results)
	fmt.Fprintf(os.Stderr, "==> chaos: history checks decided: %d of %d\n", decided, checks)
	if s.out != "" {
		if err := rep.writeReport(s.out); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "==> chaos: wrote %s\n", s.out)
	}
	short := filepath.Join(s.dir, "RELIABILITY-"+s.mode+".md")
	_ = os.WriteFile(short, []byte(rep.markdown()), 0o644)
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

// selectFaults is the mode's faults, or those of only (comma-separated
// names) among all of the mode's topology.
func selectFaults(mode, only string) []fault {
	all := faults("full")
	if mode == "ha" {
		all = haFaults()
	}
	if only == "" {
		if mode == "ha" {
			return all
		}
		return faults(mode)
	}
	want := map[string]bool{}
	for _, n := range strings.Split(only, ",") {
		want[n] = true
	}
	var sel []fault
	for _, f := range all {
		if want[f.name] {
			sel = append(sel, f)
		}
	}
	return sel
}

func or(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

type env struct {
	s    settings
	c    *private
	pg   *pgxpool.Pool
	rdb  goredis.UniversalClient
	http *http.Client
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

// fromRoot is path, relative to the repository's root unless absolute: the
// campaign runs from lab/ (make chaos) or from the root alike.
func fromRoot(root, path string) string {
	if filepath.IsAbs(path) {
		return path
	}
	return filepath.Join(root, path)
}
