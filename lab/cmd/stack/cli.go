package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/kvstack/kvstack/internal/supervisor"
	"github.com/kvstack/kvstack/lab/compose"
	"github.com/kvstack/kvstack/lab/native"
	"github.com/kvstack/kvstack/lab/native/engines"
)

type cli struct {
	s       *native.Settings
	stack   *supervisor.Stack
	engines engines.Single // KV_ENGINES=private: the stack's own
	ha      *engines.HA    // KV_TOPOLOGY=ha: its clusters
	log     io.Writer
}

// newCLI loads the settings. A command on a stack that runs (down, status,
// logs, start, stop…) acts on the topology that runs there, whichever
// KV_TOPOLOGY says; up and run start the one asked for.
func newCLI(root string, environ []string, cmd string) (*cli, error) {
	s, err := native.Load(root, environ)
	if err != nil {
		return nil, err
	}
	if ran := recordedTopology(s.Dir); ran != "" && ran != s.Get("KV_TOPOLOGY") && !startsATopology(cmd) {
		if s, err = native.Load(root, append(environ, "KV_TOPOLOGY="+ran)); err != nil {
			return nil, err
		}
	}
	c := &cli{s: s, stack: native.NewStack(s, os.Stderr), log: os.Stderr}
	if s.HA() {
		c.withHA()
	} else if s.PrivateEngines() {
		// The engines first (priority 1); the kvstack database is made and
		// migrated once they answer, before anything else starts.
		c.engines = engines.ForStack(s, filepath.Join(s.Dir, "engines"))
		var programs []supervisor.Program
		for _, e := range c.engines.All() {
			programs = append(programs, e.Program())
		}
		// Its PostgreSQL archives with pgBackRest: the scheduler backs it up.
		c.stack.Programs = append(append(programs, c.stack.Programs...), backupsProgram(s))
		migrated := false
		c.stack.Before = func(ctx context.Context, priority int) error {
			if priority <= 1 || migrated {
				return nil
			}
			migrated = true
			if err := errors.Join(engines.Provision(ctx, c.s, c.engines.Postgres),
				engines.ProvisionRabbitMQ(ctx, c.s, c.engines.RabbitMQ)); err != nil {
				return err
			}
			return c.migrate(ctx)
		}
	}
	return c, nil
}

// migrate runs the migrations. When a queue must change type (a classic
// add_key left by an earlier kvstack, now that quorum is the default)
// while the stack's own API replicas and consumer use it, they are
// stopped, gracefully, for the migration to move its messages; Up starts
// them again.
func (c *cli) migrate(ctx context.Context) error {
	err := native.Migrate(ctx, c.s, c.log)
	if !errors.Is(err, native.ErrQueueInUse) || !c.stack.Supervisor().Running(ctx) {
		return err
	}
	fmt.Fprintln(c.log, "==> migrate: a queue changes type and the stack's processes consume it: stopping them for the migration")
	for _, p := range c.stack.Programs {
		if p.Binary == "" {
			continue
		}
		if err := c.stack.Supervisor().Stop(ctx, p.Name); err != nil {
			return err
		}
	}
	return native.Migrate(ctx, c.s, c.log)
}

func (c *cli) run(ctx context.Context, cmd string, args []string) (int, error) {
	one := func() (string, error) {
		if len(args) != 1 {
			return "", usageError{}
		}
		if _, ok := c.stack.Program(args[0]); !ok {
			var names []string
			for _, p := range c.stack.Programs {
				names = append(names, p.Name)
			}
			return "", fmt.Errorf("no process named %q (one of %v)", args[0], names)
		}
		return args[0], nil
	}
	switch cmd {
	case "up":
		_, err := c.up(ctx)
		return 0, err
	case "run":
		return 0, c.runForeground(ctx)
	case "down":
		return 0, c.down(ctx)
	case "status":
		return c.status(ctx)
	case "logs":
		return 0, c.follow(20)
	case "start", "stop", "restart":
		name, err := one()
		if err != nil {
			return 2, err
		}
		return 0, c.control(ctx, cmd, name)
	case "render":
		return 0, native.WriteConfigs(ctx, c.s, c.stack.Supervisor(), c.log)
	case "jaeger":
		return 0, native.BuildJaeger(ctx, c.s, c.log)
	case "jaeger-up":
		return 0, c.jaegerUp(ctx)
	case "env":
		fmt.Print(c.s.Describe())
		return 0, nil
	case "running":
		if c.stack.Supervisor().Running(ctx) {
			return 0, nil
		}
		return 1, nil
	case "services":
		return c.services(ctx, args...)
	case "backups":
		return 0, c.scheduleBackups(ctx)
	case "backup":
		return c.backup(ctx, args)
	case "restore":
		return c.restore(ctx, args)
	case "token":
		return c.token(args)
	case "tls":
		return c.tls()
	case "compose-secrets":
		return 0, compose.Make(c.s, filepath.Join(c.s.Root, ".env"), filepath.Join(c.s.Root, ".env.example"),
			func(format string, args ...any) { fmt.Fprintf(c.log, format+"\n", args...) })
	}
	return 2, usageError{}
}

// up prepares everything the processes need, then starts what is down.
func (c *cli) up(ctx context.Context) (launched bool, err error) {
	started := time.Now()
	if err := c.claimTopology(ctx); err != nil {
		return false, err
	}
	// The machine's services, started when missing; with engines of its
	// own, the stack only needs the packages.
	ensure := "ensure"
	if c.s.PrivateEngines() {
		ensure = "install"
	}
	if code, err := c.services(ctx, ensure, "all"); err != nil || code != 0 {
		return false, fmt.Errorf("lab/scripts/services.sh %s all failed (exit %d): %v", ensure, code, err)
	}
	// Without the machine's Jaeger build, the rest starts and serves while
	// it builds in the background (jaeger-up), which then starts jaeger.
	buildJaeger := !native.JaegerBuilt(c.s)
	if buildJaeger {
		for i := range c.stack.Programs {
			if c.stack.Programs[i].Name == "jaeger" {
				c.stack.Programs[i].Manual = true
			}
		}
	} else if err := native.BuildJaeger(ctx, c.s, c.log); err != nil {
		return false, err
	}
	if err := native.Build(ctx, c.s, c.log); err != nil {
		return false, err
	}
	if buildJaeger {
		exe, e := os.Executable()
		if e != nil {
			return false, e
		}
		pid, log, e := native.StartJaegerBuild(c.s, exe)
		if e != nil {
			return false, fmt.Errorf("jaeger: background build: %w", e)
		}
		defer func() {
			if err == nil {
				fmt.Fprintf(c.log, "==> jaeger: building in the background (pid %d, log %s; the first build takes minutes), then started; "+
					"until it answers, spans are dropped. make status shows it BUILDING; `bin/stack jaeger-up` waits for it\n", pid, log)
			}
		}()
	}
	switch {
	case c.ha != nil:
		if err := c.ha.Init(ctx); err != nil {
			return false, err
		}
	case c.s.PrivateEngines():
		if err := engines.Certs(c.s); err != nil {
			return false, err
		}
		for _, e := range c.engines.All() {
			if err := e.Init(ctx); err != nil {
				return false, err
			}
		}
	default:
		if err := c.migrate(ctx); err != nil {
			return false, err
		}
	}
	if err := native.WriteConfigs(ctx, c.s, c.stack.Supervisor(), c.log); err != nil {
		return false, err
	}
	if launched, err = c.stack.Up(ctx); err != nil {
		return launched, err
	}
	s := c.s
	fmt.Fprintf(c.log, "==> %s stack up in %s (state %s)\n", s.Get("KV_TOPOLOGY"), time.Since(started).Round(100*time.Millisecond), s.Dir)
	fmt.Fprintf(c.log, "==> API %s/api   Prometheus http://%s   Alertmanager http://%s   Jaeger http://%s\n",
		native.EdgeURL(s), s.Get("PROMETHEUS_ADDR"), s.Get("ALERTMANAGER_ADDR"), s.Addr("KV_JAEGER_UI_PORT"))
	fmt.Fprintf(c.log, "==> HTTPS only: the edge's certificate is signed by the stack's own CA, %s (curl --cacert %s)\n",
		s.Get("KV_TLS_CA"), s.Get("KV_TLS_CA"))
	for _, l := range native.Links(s) {
		fmt.Fprintf(c.log, "==> link %s\n", l)
	}
	fmt.Fprintf(c.log, "==> logs: make logs (tail -F %s)   by hand: supervisorctl -c %s status\n",
		filepath.Join(s.Dir, "logs", "*.log"), c.stack.Supervisor().ConfPath())
	if w := native.RootWarning(s); w != "" {
		fmt.Fprintf(c.log, "==> %s\n", w)
	}
	return launched, nil
}

// jaegerUp builds the machine's Jaeger, or waits for the checkout that
// builds it, links bin/jaeger, then starts the stack's jaeger when the stack
// runs and waits until it answers: what needs Jaeger (e2e, bench) runs it
// after up, and up runs it in the background when Jaeger was not built.
func (c *cli) jaegerUp(ctx context.Context) error {
	defer native.JaegerBuildDone(c.s)
	if err := native.BuildJaeger(ctx, c.s, c.log); err != nil {
		return err
	}
	sup := c.stack.Supervisor()
	if _, ok := c.stack.Program("jaeger"); !ok || !sup.Running(ctx) {
		return nil
	}
	if info, err := sup.Process(ctx, "jaeger"); err != nil || info.State != "RUNNING" && info.State != "STARTING" {
		if err := sup.Start(ctx, "jaeger", false); err != nil {
			// Started meanwhile by another jaeger-up: wait for it alike.
			if info, e := sup.Process(ctx, "jaeger"); e != nil || info.State != "RUNNING" && info.State != "STARTING" {
				return err
			}
		}
	}
	if err := c.stack.WaitHealthy(ctx, "jaeger"); err != nil {
		return err
	}
	pid, _ := sup.Pid(ctx, "jaeger")
	fmt.Fprintf(c.log, "==> jaeger: up (pid %d) on %s\n", pid, c.s.Addr("KV_JAEGER_UI_PORT"))
	return nil
}

// runForeground is up, then the logs until SIGINT/SIGTERM; then the stack
// stops, unless its supervisord already ran before (then it stays up).
func (c *cli) runForeground(ctx context.Context) error {
	wasRunning := c.stack.Supervisor().Running(ctx)
	_, err := c.up(ctx)
	if err != nil {
		if !wasRunning {
			c.downAfterSignal()
		}
		return err
	}
	tail := exec.Command("tail", "-n", "0", "-F")
	tail.Args = append(tail.Args, c.logs()...)
	tail.Stdout, tail.Stderr = os.Stdout, os.Stderr
	if err := tail.Start(); err != nil {
		return err
	}
	if wasRunning {
		fmt.Fprintln(c.log, "==> following the logs; the stack ran before `run`: Ctrl-C leaves it running (make down stops it)")
	} else {
		fmt.Fprintln(c.log, "==> following the logs; Ctrl-C stops the stack")
	}
	<-ctx.Done()
	_ = tail.Process.Kill()
	_ = tail.Wait()
	fmt.Fprintln(c.log)
	if wasRunning {
		fmt.Fprintln(c.log, "==> left running (it ran before `run`): make down stops it")
		return nil
	}
	return c.downAfterSignal()
}

// downAfterSignal stops the stack even though the run's context ended; a
// second Ctrl-C does not cut it short.
func (c *cli) downAfterSignal() error {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	go func() {
		for range sigs {
			fmt.Fprintln(c.log, "==> still stopping the stack; wait")
		}
	}()
	return c.down(context.Background())
}

func (c *cli) down(ctx context.Context) error {
	if err := c.stack.Down(ctx); err != nil {
		return err
	}
	if c.s.HA() {
		fmt.Fprintf(c.log, "==> HA stack down, its RabbitMQ, Redis and PostgreSQL nodes too (their data stays in %s)\n", filepath.Join(c.s.Dir, "engines"))
	} else if c.s.PrivateEngines() {
		fmt.Fprintf(c.log, "==> stack down, its own PostgreSQL, Redis and RabbitMQ too (their data stays in %s)\n", filepath.Join(c.s.Dir, "engines"))
	} else {
		fmt.Fprintln(c.log, "==> stack down (PostgreSQL, Redis and RabbitMQ left running: make status)")
	}
	return nil
}

// status prints one line per process; exit 3 when one is not healthy.
func (c *cli) status(ctx context.Context) (int, error) {
	code := 0
	statuses, err := c.stack.Statuses(ctx)
	switch {
	case err != nil && !c.stack.Supervisor().Running(ctx):
		fmt.Printf("supervisord of %s is not running: the stack is down (make up)\n", c.s.Dir)
		code = 3
	case err != nil:
		return 1, err
	}
	width := 13
	for _, st := range statuses {
		width = max(width, len(st.Name))
	}
	for _, st := range statuses {
		health, pid, up := "healthy", "-", "-"
		building := st.Name == "jaeger" && !st.Healthy && native.JaegerBuilding(c.s) != 0
		switch {
		case building:
			// Serving meanwhile; its spans are dropped (make up).
			health = "BUILDING"
		case !st.Healthy:
			health, code = "DOWN", 3
		}
		if st.Pid != 0 {
			pid, up = fmt.Sprint(st.Pid), st.Uptime.String()
		}
		fmt.Printf("%-*s %-9s %-8s pid %-8s up %-9s %-22s %s\n", width, st.Name, st.State, health, pid, up, st.Addr, st.Log)
		if st.Problem != "" && !st.Healthy && !building {
			fmt.Printf("%-*s %s\n", width, "", st.Problem)
		}
	}
	switch {
	case c.ha != nil && statuses != nil:
		if !c.haStatus(ctx) {
			code = 3
		}
	case !c.s.PrivateEngines():
		if rc, err := c.services(ctx, "status"); err != nil || rc != 0 {
			code = 3
		}
	}
	fmt.Println()
	if w := native.RootWarning(c.s); w != "" {
		fmt.Println(w)
	}
	for _, l := range native.Links(c.s) {
		fmt.Printf("link %s\n", l)
	}
	return code, nil
}

func (c *cli) logs() []string {
	logs, _ := filepath.Glob(filepath.Join(c.s.Dir, "logs", "*.log"))
	return logs
}

// follow replaces this process by tail -F of every log.
func (c *cli) follow(lines int) error {
	logs := c.logs()
	if len(logs) == 0 {
		return fmt.Errorf("no logs under %s (make up)", filepath.Join(c.s.Dir, "logs"))
	}
	path, err := exec.LookPath("tail")
	if err != nil {
		return err
	}
	return syscall.Exec(path, append([]string{"tail", "-n", fmt.Sprint(lines), "-F"}, logs...), os.Environ())
}

// control starts, stops or restarts one process of a running stack.
func (c *cli) control(ctx context.Context, action, name string) error {
	sup := c.stack.Supervisor()
	if !sup.Running(ctx) {
		return errors.New("the stack is down (make up)")
	}
	if action == "stop" || action == "restart" {
		if err := sup.Stop(ctx, name); err != nil {
			return err
		}
		fmt.Fprintf(c.log, "==> %s: stopped\n", name)
	}
	if action == "start" || action == "restart" {
		if slices.Contains([]string{"nginx", "prometheus", "alertmanager"}, name) {
			if err := native.WriteConfigs(ctx, c.s, sup, c.log); err != nil {
				return err
			}
		}
		if err := sup.Start(ctx, name, false); err != nil {
			return err
		}
		if err := c.stack.WaitHealthy(ctx, name); err != nil {
			return err
		}
		pid, _ := sup.Pid(ctx, name)
		fmt.Fprintf(c.log, "==> %s: started (pid %d)\n", name, pid)
	}
	return nil
}

// services runs lab/scripts/services.sh (installing packages, starting the
// machine's own PostgreSQL, Redis and RabbitMQ when missing) with the ports
// of stack.env. When the stack runs engines of its own, the ports it was
// given are theirs: the machine's services (which make setup ensures for
// the tests) stay on stack.env's ports as written.
func (c *cli) services(ctx context.Context, args ...string) (int, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(c.s.Root, "lab", "scripts", "services.sh"), args...)
	names := []string{"PGPORT", "REDIS_PORT", "RABBITMQ_PORT", "RABBITMQ_METRICS_PORT"}
	cmd.Env = c.s.Environ(append(names, "KV_PROCESS_USER")...)
	if c.s.PrivateEngines() {
		for _, a := range c.s.File {
			if slices.Contains(names, a.Name) {
				cmd.Env = append(cmd.Env, a.Name+"="+a.Value)
			}
		}
	}
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return exit.ExitCode(), nil
	}
	return 0, err
}

// token prints a token signed by the stack's key (made when missing):
// `make token ROLE=… SUB=… TTL=…`.
func (c *cli) token(args []string) (int, error) {
	fs := flag.NewFlagSet("token", flag.ContinueOnError)
	d := native.DefaultToken
	roles := fs.String("role", strings.Join(d.Roles, ","), "the token's roles, comma-separated (deploy/auth/policy.yaml)")
	sub := fs.String("sub", d.Subject, "the token's subject: who its writes are attributed to")
	ttl := fs.Duration("ttl", d.TTL, "how long the token lives")
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 {
		return 2, usageError{}
	}
	tok, err := native.Token(c.s, native.TokenRequest{Roles: strings.Split(*roles, ","), Subject: *sub, TTL: *ttl})
	if err != nil {
		return 1, err
	}
	fmt.Println(tok)
	return 0, nil
}

// tls makes the stack's local CA and the edge's certificate when missing
// or due (as make up does) and prints where they are: `make tls`, for
// docker compose, which mounts them.
func (c *cli) tls() (int, error) {
	renewed, err := native.EdgeCerts(c.s)
	if err != nil {
		return 1, err
	}
	state := "current, kept"
	if renewed {
		state = "made now"
	}
	fmt.Printf("CA (clients trust it: curl --cacert)  %s\n", c.s.Get("KV_TLS_CA"))
	fmt.Printf("edge certificate (%s)  %s\n", state, filepath.Join(c.s.TLSDir(), native.EdgeFile))
	fmt.Printf("edge key                              %s\n", filepath.Join(c.s.TLSDir(), native.EdgeKeyFile))
	return 0, nil
}
