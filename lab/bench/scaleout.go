package bench

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/kvstack/kvstack/internal/rabbitmq"
)

// The scale-out figures (issue 12, `make bench-ha`): the apply rate with
// 1, 2 and 4 consumers of the add queue, and the GET hit rate with 2 and 4
// API replicas behind one nginx, on the HA topology, each with the CPU
// every process spends per operation. On a machine of two cores more
// processes cannot go faster; what the figures show is that N of each
// stay correct, and, from the CPU per operation, where the cores go and
// so what a machine per node would change.
var (
	consumerCounts = []int{1, 2, 4}
	replicaCounts  = []int{2, 4}
)

// RunScaleOut runs the scale-out scenarios on the running HA topology and
// writes their report. It does not wait for the machine to be quiet, as
// Run does: it states the load average of each run instead.
func RunScaleOut(ctx context.Context, o Options) (err error) {
	h, err := newHarness(o)
	if err != nil {
		return err
	}
	if !h.stack.ha() {
		return fmt.Errorf("the scale-out figures are the HA topology's: start it with make up-ha (KV_TOPOLOGY=ha)")
	}
	h.rep.Title, h.rep.Baselines, h.o.Busy = "kvstack scale-out report (HA topology)", false, true
	closeRun, err := h.open(ctx, "kvbench-ha-")
	defer closeRun()
	if err != nil {
		return err
	}
	if err := h.checkShipped(ctx); err != nil {
		return err
	}
	h.rep.Settings = append(h.rep.Settings, [2]string{"machine load", "not waited for (the HA topology's own processes are 20-odd); the 1, 5 and 15 minute load averages after each run are in each section's notes"})
	h.cleanData(ctx)
	for _, s := range []scenario{
		{"apply", "apply with 1, 2 and 4 consumers", h.applyScaleOut},
		{"hit", "GET hit with 2 and 4 API replicas", h.hitScaleOut},
	} {
		if len(h.o.Only) > 0 && !contains(h.o.Only, s.id) {
			continue
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
	h.cleanData(ctx)
	return h.write()
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func consumersName(n int) string {
	if n == 1 {
		return "1 consumer"
	}
	return fmt.Sprintf("%d consumers", n)
}

// applyScaleOut drains ApplyN messages with 1, 2 and 4 consumers in turn,
// Reps times, and checks after each drain that every message is in
// PostgreSQL and none was dead-lettered.
func (h *harness) applyScaleOut(ctx context.Context) (*Section, error) {
	o, rc := h.o, h.cons.RabbitMQ
	sec := &Section{ID: "apply", Title: titleApplyScaleOut,
		Setup: fmt.Sprintf("The stack's two consumers are stopped. Each run fills %s (a %s queue on the 3-node cluster) with %d messages of fresh keys, as the API publishes them (persistent, the trace context in the headers, sampled as the API's sampler would have: %s), then starts N bin/consumer processes with the stack consumer's environment (each its own instance id and port) and times them from the first handled message to the last (the sum of their messages counters, polled every 100 ms). "+
			"After each drain: every key of the run is counted in PostgreSQL (the primary) with the value published, and %s is checked empty. N = 1, 2, 4 alternate, in %d rounds. CPU: the N consumers together, and every node of each engine together.",
			rc.QueueAdd, rc.QueueType, o.ApplyN, shippedShare(), rabbitmq.DLQ(rc.QueueAdd), o.Reps)}
	if err := h.stopConsumer(ctx); err != nil {
		return sec, err
	}
	if err := h.waitEmpty(ctx, 5*time.Minute); err != nil {
		return sec, fmt.Errorf("%w (with the stack's consumers stopped: something else publishes to this stack)", err)
	}
	table := NewCPUTable("apply, N consumers", "message", cpuRowsApply...)
	rates := map[string][]float64{}
	var missing, dead float64
	for r := range o.Reps {
		for _, n := range consumerCounts {
			name := consumersName(n)
			d, check, err := h.drainBy(ctx, n)
			if err != nil {
				return sec, fmt.Errorf("%s: %w", name, err)
			}
			missing += float64(check.missing)
			dead = max(dead, float64(check.dead))
			Log("apply run %d: %s %.0f msg/s; %s; %s", r+1, name, d.rate, check, fmtPerOp(d.perOp))
			sec.Notes = append(sec.Notes, fmt.Sprintf("run %d, %s: %s; load average %s", r+1, name, check, loadAvg()))
			table.Add(name, d.perOp)
			rates[name] = append(rates[name], d.rate)
		}
	}
	sec.CPU = []*CPUTable{table}
	for _, n := range consumerCounts {
		sec.Figures = append(sec.Figures, Figure{consumersName(n), "msg/s", rates[consumersName(n)]})
	}
	one, four := consumersName(1), consumersName(4)
	sec.Targets = []Target{
		AtMost("apply, N consumers: messages missing from PostgreSQL after the drains (all runs)", missing, 0, "%.0f"),
		AtMost("apply, N consumers: messages in the dead-letter queue after a drain (the most)", dead, 0, "%.0f"),
		Reported("apply rate, 4 consumers ÷ 1", Ratio(Summarise(rates[four]).Median, Summarise(rates[one]).Median), fmtTimes),
		Reported("apply: consumers' CPU per message, 4 consumers ÷ 1", Ratio(table.Median("consumer", four), table.Median("consumer", one)), fmtTimes),
	}
	sec.Notes = append(sec.Notes, perCoreNotes(table, one, "message")...)
	return sec, h.startConsumer(ctx)
}

// applyCheck is what a drain left: messages of the run not in PostgreSQL,
// messages dead-lettered, and how the messages were shared.
type applyCheck struct {
	missing, dead int
	shares        []float64
}

func (c applyCheck) String() string {
	parts := make([]string, len(c.shares))
	for i, s := range c.shares {
		parts[i] = fmt.Sprintf("%.0f", s)
	}
	return fmt.Sprintf("%d missing from PostgreSQL, %d dead-lettered, messages handled by each consumer: %s", c.missing, c.dead, strings.Join(parts, " / "))
}

// drainBy fills the add queue and drains it with n consumers of the
// harness's (the stack's stopped), then checks the run's keys.
func (h *harness) drainBy(ctx context.Context, n int) (drained, applyCheck, error) {
	o := h.o
	first := h.keySeq
	got, err := h.fill(ctx, h.cons.RabbitMQ.QueueAdd, o.ApplyN, productionRatio)
	if err != nil {
		return drained{}, applyCheck{}, err
	}
	var (
		ports []string
		procs []Proc
	)
	for i := range n {
		name := fmt.Sprintf("scale%d-consumer%d", n, i+1)
		addr, admin := o.port(10+i), o.port(20+i)
		c, err := h.spawn(name, filepath.Join(h.dir, name+".log"), h.stack.env("consumer",
			"KV_CONSUMER_ADDR="+addr, "KV_ADMIN_ADDR="+admin, "KV_INSTANCE_ID=kvbench-"+name), filepath.Join(h.stack.s.BinDir, "consumer"))
		if err != nil {
			return drained{}, applyCheck{}, err
		}
		defer c.stop(20 * time.Second)
		ports, procs = append(ports, portOf(admin)), append(procs, Proc{"consumer", c.pid()})
	}
	d, err := h.drainAll(ctx, ports, consumerCounter, got, 5*time.Minute, func(ctx context.Context) ([]Proc, error) {
		engines, err := h.stackProcs(ctx, applyRoles...)
		return append(procs, engines...), err
	})
	if err != nil {
		return d, applyCheck{}, fmt.Errorf("%w (logs in %s)", err, h.dir)
	}
	check, err := h.checkApplied(ctx, first, o.ApplyN, ports)
	return d, check, err
}

// checkApplied counts the keys first … first+n-1 of the fills that are
// not in PostgreSQL with the harness's value, the add queue's dead
// letters, and each consumer's share.
func (h *harness) checkApplied(ctx context.Context, first int64, n int, ports []string) (applyCheck, error) {
	var c applyCheck
	for _, port := range ports {
		v, err := sumCounters(ctx, []string{port}, consumerCounter)
		if err != nil {
			return c, err
		}
		c.shares = append(c.shares, v)
	}
	var have int
	err := h.pool.QueryRow(ctx, `SELECT count(*) FROM kv_store WHERE key >= $1 AND key <= $2 AND value = $3 AND NOT deleted`,
		fmt.Sprintf("bench:apply:%010d", first), fmt.Sprintf("bench:apply:%010d", first+int64(n)-1), h.value).Scan(&have)
	if err != nil {
		return c, fmt.Errorf("counting the run's keys in PostgreSQL: %w", err)
	}
	c.missing = n - have
	if c.dead, err = h.pub.depth(rabbitmq.DLQ(h.cons.RabbitMQ.QueueAdd)); err != nil {
		return c, fmt.Errorf("depth of the dead-letter queue: %w", err)
	}
	return c, nil
}
