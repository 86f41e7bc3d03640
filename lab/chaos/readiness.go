package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/kvstack/kvstack/lab/native"
)

// readinessPoll is how often the recorder asks each process's /readyz.
const readinessPoll = 200 * time.Millisecond

// readinessLog records what each process's /readyz said over a fault: its
// status and the capabilities that were not ok, at each change. An outage
// of a dependency every replica shares must degrade routes, never take
// an API replica out of the edge (docs/DESIGN.md, Readiness per capability).
type readinessLog struct {
	start time.Time
	procs []namedAddr
	// stopped is set when the recording ends: later polls are not kept.
	stopped bool

	mu      sync.Mutex
	last    map[string]string
	changes []readinessChange
	// apiOut counts the polls at which an API replica said it was not
	// ready, or was the third in a row it did not answer (a Kubernetes
	// probe's failureThreshold); silent counts those in a row.
	apiOut map[string]int
	silent map[string]int
}

type namedAddr struct{ name, addr string }

type readinessChange struct {
	at          time.Duration // since the recorder started
	proc, state string
}

// readyProcs are the processes whose readiness a fault records: the API
// replicas and the topology's consumers (not the extra ones some faults
// start).
func (c *private) readyProcs() []namedAddr {
	procs := []namedAddr{{"api1", c.s.Addr("KV_API1_PORT")}, {"api2", c.s.Addr("KV_API2_PORT")}, {"consumer", c.s.Addr("KV_CONSUMER_PORT")}}
	if c.ha != nil {
		procs = append(procs, namedAddr{"consumer2", native.Consumer(c.s, 2).Addr})
	}
	return procs
}

// recordReadiness polls every process's /readyz until ctx ends.
func recordReadiness(ctx context.Context, procs []namedAddr) *readinessLog {
	l := &readinessLog{start: time.Now(), procs: procs, last: map[string]string{}, apiOut: map[string]int{}, silent: map[string]int{}}
	go l.run(ctx)
	return l
}

func (l *readinessLog) run(ctx context.Context) {
	client := &http.Client{Timeout: time.Second}
	t := time.NewTicker(readinessPoll)
	defer t.Stop()
	for {
		var wg sync.WaitGroup
		for _, p := range l.procs {
			wg.Go(func() { l.note(p.name, readyState(ctx, client, p.addr)) })
		}
		wg.Wait()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// stop ends the recording (the poller ends with its context).
func (l *readinessLog) stop() {
	l.mu.Lock()
	l.stopped = true
	l.mu.Unlock()
}

func (l *readinessLog) note(proc, state string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stopped {
		return
	}
	if strings.HasPrefix(proc, "api") {
		// A poll unanswered within its second on a loaded machine is not
		// yet a replica out: three in a row are, as for a probe.
		if state == "no answer" {
			l.silent[proc]++
		} else {
			l.silent[proc] = 0
		}
		if !strings.HasPrefix(state, "ready") && (state != "no answer" || l.silent[proc] >= 3) {
			l.apiOut[proc]++
		}
	}
	if l.last[proc] == state {
		return
	}
	l.last[proc] = state
	l.changes = append(l.changes, readinessChange{at: time.Since(l.start), proc: proc, state: state})
}

// readyState is a compact form of a /readyz answer: the status, then the
// capabilities that are not ok ("ready (read degraded)"), or "no answer".
func readyState(ctx context.Context, client *http.Client, addr string) string {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/readyz", nil)
	resp, err := client.Do(req)
	if err != nil {
		return "no answer"
	}
	defer resp.Body.Close()
	var body struct {
		Status       string `json:"status"`
		Capabilities map[string]struct {
			State string `json:"state"`
		} `json:"capabilities"`
	}
	data, _ := io.ReadAll(resp.Body)
	if json.Unmarshal(data, &body) != nil || body.Status == "" {
		return fmt.Sprintf("HTTP %d", resp.StatusCode)
	}
	var notOK []string
	for name, c := range body.Capabilities {
		if c.State != "ok" {
			notOK = append(notOK, name+" "+c.State)
		}
	}
	sort.Strings(notOK)
	if len(notOK) == 0 {
		return body.Status
	}
	return body.Status + " (" + strings.Join(notOK, ", ") + ")"
}

// timeline is the recorded changes, process by process, as offsets from
// the fault's injection: "api1: ready 0.0 s, ready (read degraded) +0.4 s".
func (l *readinessLog) timeline(injectAt time.Time) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, p := range l.procs {
		var parts []string
		for _, c := range l.changes {
			if c.proc != p.name {
				continue
			}
			at := l.start.Add(c.at).Sub(injectAt)
			parts = append(parts, fmt.Sprintf("%s at %+.1f s", c.state, at.Seconds()))
		}
		out = append(out, p.name+": "+strings.Join(parts, " → "))
	}
	return out
}

// apiNotReady names the API replicas that were not ready at some poll,
// with how many polls.
func (l *readinessLog) apiNotReady() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for name, n := range l.apiOut {
		out = append(out, fmt.Sprintf("%s at %d polls", name, n))
	}
	slices.Sort(out)
	return out
}
