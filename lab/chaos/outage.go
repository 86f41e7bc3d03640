package main

import (
	"context"
	"fmt"
	"time"

	"github.com/kvstack/kvstack/internal/supervisor"
)

// outageChecks are what a fault of a dependency every replica shares
// must leave whole (issue 21): it degrades routes, and takes no API
// replica out of the edge.
type outageChecks struct {
	// apiReady: every API replica's /readyz stays 200 throughout.
	apiReady bool
	// refuseWithin, when set: every write refused with 503 got it within
	// this bound (a prompt refusal, never a hang).
	refuseWithin time.Duration
	// hitsServed: while the fault holds, reads are answered from the
	// cache, and a read that fails is a 503 (a miss with no database),
	// never a 502 or no answer.
	hitsServed bool
	// deploy: the fault restarts the processes it names in killed itself,
	// one by one, as a deploy does (not a kill the supervisor repairs).
	deploy bool
}

// outageFigures are what a fault's readiness and reads showed.
type outageFigures struct {
	readiness  []string // each process's /readyz over the fault
	apiOut     []string // API replicas not ready at some poll
	refusedMax time.Duration
	// Reads answered while the fault held: 200 by where from, 404, 503,
	// anything else.
	holdFromCache, holdFromStore, holdNotFound, hold503, holdOther int
	healedAt                                                       time.Time
	deploy                                                         bool
}

// readRec is one read: when it was sent, what it got.
type readRec struct {
	at        time.Time
	status    int // 0: no answer
	fromCache bool
}

// outageFigures fills in the figures of a fault injected at injectAt.
func (r *result) noteOutage(rec *readinessLog, led *ledger, injectAt time.Time) {
	if rec != nil {
		r.readiness = rec.timeline(injectAt)
		r.apiOut = rec.apiNotReady()
	}
	for _, a := range led.snapshot() {
		if a.Status == 503 {
			r.refusedMax = max(r.refusedMax, a.End.Sub(a.Start))
		}
	}
	if injectAt.IsZero() || r.healedAt.IsZero() {
		return
	}
	for _, rd := range led.readLog() {
		if rd.at.Before(injectAt) || rd.at.After(r.healedAt) {
			continue
		}
		switch {
		case rd.status == 200 && rd.fromCache:
			r.holdFromCache++
		case rd.status == 200:
			r.holdFromStore++
		case rd.status == 404:
			r.holdNotFound++
		case rd.status == 503:
			r.hold503++
		default:
			r.holdOther++
		}
	}
}

// judgeOutage turns the outage figures into failures.
func (r *result) judgeOutage(f fault) {
	r.deploy = f.deploy
	if f.apiReady && len(r.apiOut) > 0 {
		r.fail("an API replica was taken out of the edge (/readyz not 200): %v", r.apiOut)
	}
	if f.refuseWithin > 0 && r.refusedMax > f.refuseWithin {
		r.fail("a refused write took %s, not within %s", ms(r.refusedMax), f.refuseWithin)
	}
	if f.hitsServed {
		if r.holdFromCache == 0 {
			r.fail("no read served from the cache while the fault held")
		}
		if r.holdOther > 0 {
			r.fail("%d reads failed otherwise than 503 while the fault held", r.holdOther)
		}
	}
}

// outageLine is the report's line of a fault's readiness and reads.
func (r result) outageLine() string {
	s := fmt.Sprintf("reads while the fault held (from the injection to the heal): %d × 200 from the cache, %d × 200 from PostgreSQL, %d × 404, %d × 503, %d other failures", r.holdFromCache, r.holdFromStore, r.holdNotFound, r.hold503, r.holdOther)
	if r.refusedMax > 0 {
		s += fmt.Sprintf("; slowest refused write (503) %s", ms(r.refusedMax))
	}
	return s
}

// rollingRestart restarts each process in turn as a deploy does: SIGTERM
// through supervisord (the process drains: not ready, then serving
// KV_DRAIN_DELAY, in-flight requests finished, then exit), started again,
// and the next one only once this one answers /readyz 200.
func rollingRestart(names ...string) *action {
	return &action{fmt.Sprintf("rolling restart of %v", names), func(ctx context.Context, c *private) error {
		st := c.p.Stack()
		for _, name := range names {
			p, ok := st.Program(name)
			if !ok {
				return fmt.Errorf("no program %s", name)
			}
			if err := c.p.Stop(ctx, name); err != nil {
				return err
			}
			if err := st.Supervisor().Start(ctx, name, false); err != nil {
				return err
			}
			if err := supervisor.Wait(ctx, p.Health, 2*time.Minute); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			if err := waitReadyz(ctx, p.Health, 2*time.Minute); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
		}
		return nil
	}}
}

// waitReadyz waits until the process behind a health probe answers
// /readyz 200 (the probe may check /healthz: alive, not yet ready).
func waitReadyz(ctx context.Context, probe supervisor.Probe, within time.Duration) error {
	hp, ok := probe.(supervisor.HTTPProbe)
	if !ok {
		return nil
	}
	hp.Path = "/readyz"
	return supervisor.Wait(ctx, hp, within)
}

// haRollingRestart is the HA campaign's deploy: both API replicas and both
// consumers restarted one by one under load.
func haRollingRestart() fault {
	procs := []string{"api1", "api2", "consumer", "consumer2"}
	return fault{
		name: "rolling-restart", what: "a deploy: api1, api2, consumer and consumer2 restarted one by one (SIGTERM, drain, start, the next once it answers /readyz 200) under load; nothing may fail",
		inject: rollingRestart(procs...), killed: procs, outageChecks: outageChecks{deploy: true},
	}
}

// repeated is each fault of list n times in a row.
func repeated(list []fault, n int) []fault {
	var out []fault
	for _, f := range list {
		for range max(n, 1) {
			out = append(out, f)
		}
	}
	return out
}
