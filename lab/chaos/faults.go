package main

import (
	"context"
	"fmt"
	"time"

	"github.com/kvstack/kvstack/internal/supervisor"
)

// fault is one scenario: inject under load, hold, heal; then the checks.
type fault struct {
	name, what string
	extra      []string // extra consumers running during the fault (consumer2, consumer3)
	inject     *action
	hold       time.Duration
	heal       *action // nil: nothing to do by hand
	// killed are the processes the fault kills with -9: their supervisor
	// must bring each back by itself, with a new pid.
	killed []string
	// reads may fail while the fault holds (PostgreSQL down: a cache miss
	// has nowhere to go).
	readsMayFail bool
	// writes may fail while the fault holds (broker down, replica killed).
	writesMayFail bool
	// firstCommit: measure, from the injection, how long until a commit
	// through DATABASE_URL succeeds (a PostgreSQL failover).
	firstCommit bool
	// maxGap, when set, is what the longest gap without a 202 after the
	// injection must stay under.
	maxGap time.Duration
	// knownIllegal names an open defect that makes this fault's
	// linearizable history illegal: the check's failure is reported with
	// it instead of failing the fault, until the defect is fixed.
	knownIllegal string
	outageChecks
}

// action is one step on the private stack, through its supervisor.
type action struct {
	desc string
	run  func(ctx context.Context, c *private) error
}

// kill9 sends SIGKILL to a process (its process group: a server's
// children with it), by the pid supervisord reports.
func kill9(name string) *action {
	return &action{"kill -9 " + name, func(ctx context.Context, c *private) error {
		_, err := c.p.Kill(ctx, name)
		return err
	}}
}

// stop stops a process through supervisord (its stop signal; supervisord
// then leaves it down).
func stop(name string) *action {
	return &action{"supervisorctl stop " + name, func(ctx context.Context, c *private) error {
		return c.p.Stop(ctx, name)
	}}
}

// start starts a process through supervisord and waits until it answers
// its health check: the service is back from then on (supervisord counts
// it started a second later, its startsecs), and the campaign looks at the
// cache at once, before the repair loop had time to work.
func start(name string) *action {
	return &action{"supervisorctl start " + name, func(ctx context.Context, c *private) error {
		st := c.p.Stack()
		p, ok := st.Program(name)
		if !ok {
			return fmt.Errorf("no program %s", name)
		}
		if err := st.Supervisor().Start(ctx, name, false); err != nil {
			return err
		}
		return supervisor.Wait(ctx, p.Health, 2*time.Minute)
	}}
}

// refusePrompt bounds a refused write's answer while the broker is down:
// the API's publish timeout (2 s) and a margin.
const refusePrompt = 3 * time.Second

// rollingProcs are what a deploy restarts: every API replica and the
// consumer.
var rollingProcs = []string{"api1", "api2", "consumer"}

func faults(mode string) []fault {
	all := []fault{
		{name: "baseline", what: "no fault: load, drain, checks"},
		{
			name: "consumer-kill9", what: "kill -9 the consumer under load (batches in flight); its supervisor restarts it",
			inject: kill9("consumer"), hold: 3 * time.Second, killed: []string{"consumer"},
		},
		{
			name: "rabbitmq-restart", what: "stop the RabbitMQ node (orderly) and start it again at once",
			inject: stop("rabbitmq"), heal: start("rabbitmq"), writesMayFail: true,
			outageChecks: outageChecks{apiReady: true, refuseWithin: refusePrompt},
		},
		{
			name: "rabbitmq-stop-10s", what: "RabbitMQ node stopped for 10 s while clients write: every read served, writes refused promptly (503), the API replicas ready (writes down)",
			inject: stop("rabbitmq"), hold: 10 * time.Second, heal: start("rabbitmq"), writesMayFail: true,
			outageChecks: outageChecks{apiReady: true, refuseWithin: refusePrompt},
		},
		{
			name: "redis-stop-10s", what: "Redis stopped 10 s (SIGTERM: it saves its dump), restarted with that dump: entries older than PostgreSQL come back; every read served (from PostgreSQL), the API replicas ready (reads degraded)",
			inject: stop("redis"), hold: 10 * time.Second, heal: start("redis"),
			outageChecks: outageChecks{apiReady: true},
		},
		{
			name: "postgres-stop-10s", what: "PostgreSQL stopped 10 s (immediate shutdown, crash recovery on start): cache hits served (a miss may get 503), writes accepted, the API replicas ready (reads degraded, listing down)",
			inject: stop("postgres"), hold: 10 * time.Second, heal: start("postgres"), readsMayFail: true,
			outageChecks: outageChecks{apiReady: true, hitsServed: true},
		},
		{
			name: "api1-kill9", what: "kill -9 api1 under load; nginx sends what it dropped to api2 (reads and writes); its supervisor restarts it",
			inject: kill9("api1"), hold: 3 * time.Second, killed: []string{"api1"},
		},
		{
			name: "rolling-restart", what: "a deploy: api1, api2 and the consumer restarted one by one (SIGTERM, drain, start, the next once it answers /readyz 200) under load; nothing may fail",
			inject: rollingRestart(rollingProcs...), killed: rollingProcs, outageChecks: outageChecks{deploy: true},
		},
		{
			name: "schema-expand-contract", what: "a schema change applied under load, as migrations/README.md says to write one: expand (kv_store gets a nullable column, its index built concurrently, a backfill in batches of 500), 5 s of serving on the expanded schema, then contract (index and column dropped); nothing may fail",
			inject: schemaChange(5 * time.Second),
		},
		{
			name: "consumers-2-kill1", what: "two consumers; kill -9 the stack's consumer; its supervisor restarts it",
			extra:  []string{"consumer2"},
			inject: kill9("consumer"), hold: 3 * time.Second, killed: []string{"consumer"},
		},
		{
			name: "consumers-3-kill1", what: "three consumers; kill -9 consumer3; its supervisor restarts it",
			extra:  []string{"consumer2", "consumer3"},
			inject: kill9("consumer3"), hold: 3 * time.Second, killed: []string{"consumer3"},
		},
	}
	if mode != "short" {
		return all
	}
	short := map[string]bool{"consumer-kill9": true, "rabbitmq-stop-10s": true, "redis-stop-10s": true, "api1-kill9": true, "rolling-restart": true}
	var out []fault
	for _, f := range all {
		if short[f.name] {
			out = append(out, f)
		}
	}
	return out
}

// run does an action, naming it in the error.
func (a *action) do(ctx context.Context, c *private) error {
	if err := a.run(ctx, c); err != nil {
		return fmt.Errorf("%s: %w", a.desc, err)
	}
	return nil
}
