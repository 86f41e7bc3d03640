//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// killAPI1 kills api1 with SIGKILL, as a crash would, and makes sure that
// whatever happens next the test leaves it running again.
func (h *harness) killAPI1(t *testing.T) (pid int) {
	t.Helper()
	pid = h.pidOf(t, "api1")
	t.Cleanup(func() {
		if err := h.startProcess("api1"); err != nil {
			t.Errorf("api1 not running again after the test: %v", err)
		}
	})
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill -9 api1 (pid %d): %v", pid, err)
	}
	eventually(t, 5*time.Second, func() string {
		if syscall.Kill(pid, 0) == nil {
			return "api1 still alive after kill -9"
		}
		return ""
	})
	return pid
}

// Under a steady load of GETs and PUTs through nginx, api1 dies (kill -9):
// nginx sends each request that got no answer from it, a write in its
// hands too, to api2, so no client sees an error. The stack's supervisord
// brings api1 back by itself and nginx sends it traffic again.
func TestFailoverKillAPI1(t *testing.T) {
	h := newHarness(t)
	if !h.replicaHealthy("KV_API1_PORT") || !h.replicaHealthy("KV_API2_PORT") {
		t.Fatal("api1 and api2 must both be up before the failover test: `make up`")
	}
	key := uniq("e2e-failover")
	if r := h.put(t, key, "steady"); r.status != http.StatusAccepted {
		t.Fatalf("PUT: status %d, body %s", r.status, r.body)
	}
	get := h.nginx + "/api?key=" + url.QueryEscape(key)
	eventually(t, 10*time.Second, func() string {
		if r, err := h.try(http.MethodGet, get, nil); err != nil || r.status != http.StatusOK {
			return fmt.Sprintf("key not readable yet: %v %v", r.status, err)
		}
		return ""
	})

	load := startLoad(t, h, key)
	time.Sleep(time.Second)
	before := load.counts()
	killed := h.killAPI1(t)
	time.Sleep(3 * time.Second)
	after := load.stop()

	t.Logf("GETs and PUTs answered before the kill %v, in all %v; failed: %d, first: %s",
		before, after, load.failed.Load(), strings.Join(load.failures, "; "))
	if load.failed.Load() != 0 {
		t.Errorf("%d requests failed during the failover, want 0; first: %s", load.failed.Load(), strings.Join(load.failures, "; "))
	}
	for _, m := range []string{http.MethodGet, http.MethodPut} {
		if before[m] == 0 || after[m] == before[m] {
			t.Errorf("the %s load did not run before and after the kill (%d before, %d in all)", m, before[m], after[m])
		}
	}

	// Nobody restarts it: the supervisor does, with a new pid.
	eventually(t, 15*time.Second, func() string {
		if pid, _ := h.stack().Supervisor().Pid(context.Background(), "api1"); pid == 0 || pid == killed || !h.replicaHealthy("KV_API1_PORT") {
			return fmt.Sprintf("api1 not back by itself (pid %d, killed %d)", pid, killed)
		}
		return ""
	})
	// nginx left api1 alone for fail_timeout; then it gets its turn again.
	// Every request sent is looked for, not only the last: the API writes
	// its log lines every 100 ms (telemetry.NewLogBuffer), so the line of
	// the request just answered may not be in the file yet.
	var sent []string
	eventually(t, 15*time.Second, func() string {
		id := uniq("e2e-back")
		sent = append(sent, id)
		if r := h.do(t, http.MethodGet, "/api?key="+url.QueryEscape(key), nil, "X-Request-Id", id); r.status != http.StatusOK {
			return fmt.Sprintf("GET after restart: status %d", r.status)
		}
		for _, id := range sent {
			if len(logLines(t, h.logFile("api1"), id)) > 0 {
				return ""
			}
		}
		return "api1 served none of the requests since its restart"
	})
}

// With api1 dead, each PUT through nginx is answered 202: by api2, or by
// api1 once its supervisor restarted it. A PUT nginx tried on dead api1
// first (refused) was sent again to api2, and each was handled by exactly
// one replica, once.
func TestWritesAnsweredWithOneReplicaDown(t *testing.T) {
	h := newHarness(t)
	h.killAPI1(t)

	var retried int
	for i := range 12 {
		id, key := uniq("e2e-write"), uniq("e2e-write-key")
		if r := h.put(t, key, "once", "X-Request-Id", id); r.status != http.StatusAccepted {
			t.Fatalf("PUT %d: status %d, want 202; body %s", i, r.status, r.body)
		}
		// The replica logs a request after answering it: wait for the line.
		eventually(t, 2*time.Second, func() string {
			if handled := h.putsLogged(t, id); handled != 1 {
				return fmt.Sprintf("PUT %d handled %d times by the replicas, want 1", i, handled)
			}
			return ""
		})
		// nginx logs a request once it has sent the answer: wait for it too.
		var access []map[string]any
		eventually(t, 2*time.Second, func() string {
			if access = logLines(t, h.logFile("nginx-access"), id); len(access) != 1 {
				return fmt.Sprintf("PUT %d: %d nginx access log lines, want 1", i, len(access))
			}
			return ""
		})
		if up, _ := access[0]["upstream_addr"].(string); strings.Contains(up, ",") {
			retried++
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("after api1's kill: 12 PUTs accepted, %d of them sent to api2 after api1 refused them", retried)
}

// load is a steady stream of GETs and PUTs of one key through nginx, from
// a few clients with keep-alive connections of their own.
type load struct {
	answered map[string]*atomic.Int64 // by method; made before the clients start
	failed   atomic.Int64
	mu       sync.Mutex
	failures []string
	done     chan struct{}
	wg       sync.WaitGroup
}

func startLoad(t *testing.T, h *harness, key string) *load {
	l := &load{done: make(chan struct{}), answered: map[string]*atomic.Int64{
		http.MethodGet: new(atomic.Int64), http.MethodPut: new(atomic.Int64),
	}}
	body, _ := json.Marshal(map[string]string{"key": key, "value": "steady"})
	get := h.nginx + "/api?key=" + url.QueryEscape(key)
	for i := range 4 {
		c := &harness{stackEnv: h.stackEnv, nginx: h.nginx, client: h.stackEnv.client(t, 10*time.Second), spec: h.spec}
		l.wg.Go(func() {
			defer c.client.CloseIdleConnections()
			for n := i; ; n++ {
				select {
				case <-l.done:
					return
				default:
				}
				method, target, want, b := http.MethodGet, get, http.StatusOK, []byte(nil)
				if n%2 == 1 {
					method, target, want, b = http.MethodPut, h.nginx+"/api", http.StatusAccepted, body
				}
				r, err := c.try(method, target, b)
				l.record(method, want, r, err)
				// Four workers from one address stay under the edge's
				// shipped per-client rate (NGINX_RATE_LIMIT 500r/s): at
				// most 400 requests a second in all.
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
	return l
}

// record counts the answer to a request of method that wanted status want.
func (l *load) record(method string, want int, r response, err error) {
	if err == nil && r.status == want {
		l.answered[method].Add(1)
		return
	}
	l.failed.Add(1)
	l.mu.Lock()
	if len(l.failures) < 5 {
		l.failures = append(l.failures, fmt.Sprintf("%s: status %d err %v body %.200s", method, r.status, err, r.body))
	}
	l.mu.Unlock()
	time.Sleep(10 * time.Millisecond) // do not spin on a broken edge
}

// counts are the requests answered so far, by method.
func (l *load) counts() map[string]int64 {
	out := map[string]int64{}
	for m, n := range l.answered {
		out[m] = n.Load()
	}
	return out
}

// stop ends the load and returns the final counts.
func (l *load) stop() map[string]int64 {
	close(l.done)
	l.wg.Wait()
	return l.counts()
}

// putsLogged counts the PUTs with request id id that the replicas logged.
func (h *harness) putsLogged(t *testing.T, id string) int {
	var n int
	for _, replica := range []string{"api1", "api2"} {
		for _, line := range logLines(t, h.logFile(replica), id) {
			if line["method"] == http.MethodPut {
				n++
			}
		}
	}
	return n
}
