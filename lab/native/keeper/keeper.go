// Package keeper is the HA topology's failover manager for its PostgreSQL
// pair (make up-ha): what Patroni or a Kubernetes operator (CloudNativePG,
// as deploy/k8s uses) does in production, done by the harness on one
// machine. It runs under the stack's supervisord (`bin/stack keeper`),
// which restarts it; it owns the PostgreSQL nodes' programs, which
// supervisord does not restart.
//
// Every Interval it looks at both nodes and takes at most one step
// towards "one primary, the other its streaming synchronous standby":
//
//   - no node runs: start the one holding the newest primary's data (the
//     first node, made with initdb, on a blank stack);
//   - the primary is gone (exited, or running without answering for
//     Grace) and the standby answers: promote the standby (the pair fences
//     the old primary first, so that two primaries never run);
//   - the other node is down: start it when it is a standby, else rejoin it
//     as the new primary's standby (a fresh copy), as Patroni rebuilds a
//     former leader;
//   - both answer as primaries (only if someone started a fenced node by
//     hand): fence the one on the older timeline, which the next step
//     rejoins;
//   - else let the pair keep commits synchronous while the standby
//     streams, and not wait on it while it does not (Reconcile).
package keeper

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/kvstack/kvstack/internal/engine"
	"github.com/kvstack/kvstack/internal/supervisor"
)

// Keeper keeps a PostgresPair whole under the supervisor that runs it.
type Keeper struct {
	Pair *engine.PostgresPair
	Sup  *supervisor.Supervisor
	Log  io.Writer
	// Interval is the time between two looks (default 500 ms).
	Interval time.Duration
	// Grace is how long a node that runs but does not answer (starting,
	// recovering, hung) is waited for before it counts as lost (default
	// 15 s).
	Grace time.Duration

	mu        sync.Mutex
	state     State
	silentFor map[string]time.Time // since when a running node has not answered
}

// State is what the keeper saw last.
type State struct {
	Primary, Standby string // node names ("" when none)
	Streaming        bool   // the standby streams from the primary
	Synchronous      bool   // and commits wait for it
	Failovers        int    // promotions done by this keeper
	LastFailover     time.Time
	Problem          string // what is not right, when something is not
}

func (k *Keeper) logf(format string, args ...any) {
	if k.Log != nil {
		fmt.Fprintf(k.Log, time.Now().UTC().Format("15:04:05.000")+" keeper: "+format+"\n", args...)
	}
}

// State is a copy of what the keeper saw last.
func (k *Keeper) State() State {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.state
}

// Run looks every Interval until ctx ends.
func (k *Keeper) Run(ctx context.Context) error {
	interval := k.Interval
	if interval == 0 {
		interval = 500 * time.Millisecond
	}
	for {
		if err := k.Step(ctx); err != nil && ctx.Err() == nil {
			k.setProblem(err.Error())
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(interval):
		}
	}
}

func (k *Keeper) setProblem(p string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if p != k.state.Problem && p != "" {
		k.logf("%s", p)
	}
	k.state.Problem = p
}

// role is a node's state as the keeper sees it.
type role int

const (
	down    role = iota // not running under the supervisor
	silent              // running, not answering
	primary             // answers, not in recovery
	standby             // answers, in recovery
)

func (r role) String() string { return [...]string{"down", "silent", "primary", "standby"}[r] }

// observe is each node's role.
func (k *Keeper) observe(ctx context.Context) (map[*engine.Postgres]role, error) {
	procs, err := k.Sup.Processes(ctx)
	if err != nil {
		return nil, err
	}
	roles := map[*engine.Postgres]role{}
	for _, n := range k.Pair.Nodes {
		name := n.Program().Name
		switch procs[name].State {
		case "RUNNING", "STARTING":
		default:
			roles[n] = down
			delete(k.silentFor, name)
			continue
		}
		isPrimary, err := n.IsPrimary(ctx)
		switch {
		case err != nil:
			roles[n] = silent
			if _, ok := k.silentFor[name]; !ok {
				k.silentFor[name] = time.Now()
			}
			continue
		case isPrimary:
			roles[n] = primary
		default:
			roles[n] = standby
		}
		delete(k.silentFor, name)
	}
	return roles, nil
}

// Step takes at most one step towards a whole pair (see the package doc).
func (k *Keeper) Step(ctx context.Context) error {
	if k.silentFor == nil {
		k.silentFor = map[string]time.Time{}
	}
	roles, err := k.observe(ctx)
	if err != nil {
		return fmt.Errorf("supervisord: %w", err)
	}
	var primaries []*engine.Postgres
	for _, n := range k.Pair.Nodes {
		if roles[n] == primary {
			primaries = append(primaries, n)
		}
	}
	switch len(primaries) {
	case 2:
		return k.fenceOlder(ctx)
	case 1:
		return k.keepStandby(ctx, primaries[0], roles[k.Pair.Other(primaries[0])])
	}
	k.record(State{Problem: "no primary answers"})
	for _, n := range k.Pair.Nodes {
		if roles[n] == standby && k.lost(k.Pair.Other(n), roles) {
			return k.failover(ctx, n, k.Pair.Other(n))
		}
	}
	if roles[k.Pair.Nodes[0]] == down && roles[k.Pair.Nodes[1]] == down {
		return k.startNewest(ctx)
	}
	return nil // a node is starting: wait for it
}

// lost tells whether a node that is not the primary counts as gone: down,
// or running without an answer for longer than Grace.
func (k *Keeper) lost(n *engine.Postgres, roles map[*engine.Postgres]role) bool {
	switch roles[n] {
	case down:
		return true
	case silent:
		grace := k.Grace
		if grace == 0 {
			grace = 15 * time.Second
		}
		return time.Since(k.silentFor[n.Program().Name]) > grace
	}
	return false
}

// failover promotes the standby s in place of the primary that is gone.
func (k *Keeper) failover(ctx context.Context, s, old *engine.Postgres) error {
	k.logf("primary %s is gone; promoting the standby %s", old.Program().Name, s.Program().Name)
	started := time.Now()
	if _, err := k.Pair.Promote(ctx, k.Sup); err != nil {
		if errors.Is(err, engine.ErrDegraded) {
			// The standby may lack commits: the old primary's data is the
			// only complete copy. Bring it back instead.
			k.logf("%v: starting %s again instead", err, old.Program().Name)
			return k.Sup.Start(ctx, old.Program().Name, false)
		}
		return fmt.Errorf("promote %s: %w", s.Program().Name, err)
	}
	k.logf("%s promoted in %s; %s will be rejoined as its standby", s.Program().Name, time.Since(started).Round(time.Millisecond), old.Program().Name)
	k.mu.Lock()
	k.state.Failovers++
	k.state.LastFailover = time.Now()
	k.mu.Unlock()
	k.record(State{Primary: s.Program().Name, Standby: old.Program().Name, Problem: "promoted; the old primary is not back yet"})
	return nil
}

// keepStandby brings the node that is not the primary p back as its
// standby when it is down, and keeps replication synchronous while it
// streams.
func (k *Keeper) keepStandby(ctx context.Context, p *engine.Postgres, other role) error {
	o := k.Pair.Other(p)
	name := o.Program().Name
	if other == down {
		if isStandby(o) {
			k.logf("standby %s is down; starting it", name)
			return k.Sup.Start(ctx, name, false)
		}
		k.logf("%s is down and no standby (a former primary, or new): rejoining it as the standby of %s", name, p.Program().Name)
		k.record(State{Primary: p.Program().Name, Standby: name, Problem: "rejoining " + name + " (a fresh copy of the primary)"})
		started := time.Now()
		rctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
		defer cancel()
		if err := k.Pair.Rejoin(rctx, k.Sup, o); err != nil {
			return fmt.Errorf("rejoin %s: %w", name, err)
		}
		k.logf("%s streams from %s again, %s after the rejoin began", name, p.Program().Name, time.Since(started).Round(time.Millisecond))
	}
	rep, err := k.Pair.Reconcile(ctx)
	if err != nil {
		return fmt.Errorf("reconcile: %w", err)
	}
	st := State{Primary: rep.Primary, Standby: rep.Standby, Streaming: rep.Streaming, Synchronous: rep.Synchronous}
	if !rep.Streaming {
		st.Problem = fmt.Sprintf("standby %s is %s, not streaming: commits are on %s alone", rep.Standby, other, rep.Primary)
	}
	k.record(st)
	return nil
}

// record keeps what was seen, with the failover count.
func (k *Keeper) record(st State) {
	k.mu.Lock()
	st.Failovers, st.LastFailover = k.state.Failovers, k.state.LastFailover
	changed := st.Primary != k.state.Primary || st.Streaming != k.state.Streaming || st.Synchronous != k.state.Synchronous
	k.state = st
	k.mu.Unlock()
	if changed && st.Primary != "" {
		k.logf("primary %s, standby %s: streaming %t, synchronous %t", st.Primary, st.Standby, st.Streaming, st.Synchronous)
	}
}

// startNewest starts, when no node runs, the node whose data is the newest
// primary's: one that is not a standby, on the higher timeline; on a blank
// stack the first node, which Init makes with initdb.
func (k *Keeper) startNewest(ctx context.Context) error {
	var best *engine.Postgres
	bestTimeline := -1
	for _, n := range k.Pair.Nodes {
		if !hasData(n) || isStandby(n) {
			continue
		}
		if tl := timelineOnDisk(n); tl > bestTimeline {
			best, bestTimeline = n, tl
		}
	}
	if best == nil {
		for _, n := range k.Pair.Nodes {
			if hasData(n) { // both standbys: either will be promoted
				best = n
				break
			}
		}
	}
	if best == nil {
		best = k.Pair.Nodes[0]
		k.logf("no node holds data: making %s (initdb)", best.Program().Name)
		if err := best.Init(ctx); err != nil {
			return err
		}
	}
	k.logf("no node runs: starting %s", best.Program().Name)
	return k.Sup.Start(ctx, best.Program().Name, false)
}

// fenceOlder stops, of two primaries, the one on the older timeline (the
// one that was not promoted); the next step rejoins it.
func (k *Keeper) fenceOlder(ctx context.Context) error {
	a, b := k.Pair.Nodes[0], k.Pair.Nodes[1]
	ta, errA := timeline(ctx, a)
	tb, errB := timeline(ctx, b)
	if err := errors.Join(errA, errB); err != nil {
		return err
	}
	older := a
	if tb < ta {
		older = b
	}
	k.logf("both %s (timeline %d) and %s (timeline %d) answer as primaries: stopping %s", a.Program().Name, ta, b.Program().Name, tb, older.Program().Name)
	return k.Sup.Stop(ctx, older.Program().Name)
}

func timeline(ctx context.Context, n *engine.Postgres) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, n.URL("postgres", "", "postgres"))
	if err != nil {
		return 0, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var tl int
	err = conn.QueryRow(ctx, "SELECT timeline_id FROM pg_control_checkpoint()").Scan(&tl)
	return tl, err
}

func dataDir(n *engine.Postgres) string { return filepath.Join(n.Dir, "data") }

func hasData(n *engine.Postgres) bool {
	_, err := os.Stat(filepath.Join(dataDir(n), "PG_VERSION"))
	return err == nil
}

func isStandby(n *engine.Postgres) bool {
	_, err := os.Stat(filepath.Join(dataDir(n), "standby.signal"))
	return err == nil
}

// timelineOnDisk is the newest timeline a stopped node's WAL knows of (a
// promotion writes NNNNNNNN.history): 1 when none.
func timelineOnDisk(n *engine.Postgres) int {
	files, _ := filepath.Glob(filepath.Join(dataDir(n), "pg_wal", "*.history"))
	newest := 1
	for _, f := range files {
		var tl int
		if _, err := fmt.Sscanf(filepath.Base(f), "%08X.history", &tl); err == nil && tl > newest {
			newest = tl
		}
	}
	return newest
}
