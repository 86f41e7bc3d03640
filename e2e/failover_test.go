//go:build e2e

package e2e

import (
	"context"
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

// Under a steady GET load through nginx, api1 dies: nginx retries each
// failed read on api2, so no client sees an error. The stack's supervisord
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

	// The load: a few clients, each with its own keep-alive connections,
	// for a bounded time.
	const clients = 4
	var (
		ok, failed atomic.Int64
		mu         sync.Mutex
		failures   []string
		stop       = make(chan struct{})
		wg         sync.WaitGroup
	)
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &harness{stackEnv: h.stackEnv, nginx: h.nginx, client: &http.Client{Timeout: 10 * time.Second}}
			defer c.client.CloseIdleConnections()
			for {
				select {
				case <-stop:
					return
				default:
				}
				r, err := c.try(http.MethodGet, get, nil)
				if err == nil && r.status == http.StatusOK {
					ok.Add(1)
					continue
				}
				failed.Add(1)
				mu.Lock()
				if len(failures) < 5 {
					failures = append(failures, fmt.Sprintf("status %d err %v body %.200s", r.status, err, r.body))
				}
				mu.Unlock()
				time.Sleep(10 * time.Millisecond) // do not spin on a broken edge
			}
		}()
	}
	time.Sleep(time.Second)
	before := ok.Load()
	killed := h.killAPI1(t)
	time.Sleep(3 * time.Second)
	close(stop)
	wg.Wait()

	t.Logf("GETs: %d ok (%d before the kill), %d failed", ok.Load(), before, failed.Load())
	if failed.Load() != 0 {
		t.Errorf("%d GETs failed during the failover, want 0; first: %s", failed.Load(), strings.Join(failures, "; "))
	}
	if before == 0 || ok.Load() == before {
		t.Errorf("the load did not run before and after the kill (%d before, %d in all)", before, ok.Load())
	}

	// Nobody restarts it: the supervisor does, with a new pid.
	eventually(t, 15*time.Second, func() string {
		if pid, _ := h.stack().Supervisor().Pid(context.Background(), "api1"); pid == 0 || pid == killed || !h.replicaHealthy("KV_API1_PORT") {
			return fmt.Sprintf("api1 not back by itself (pid %d, killed %d)", pid, killed)
		}
		return ""
	})
	// nginx left api1 alone for fail_timeout; then it gets its turn again.
	eventually(t, 15*time.Second, func() string {
		id := uniq("e2e-back")
		if r := h.do(t, http.MethodGet, "/api?key="+url.QueryEscape(key), nil, "X-Request-Id", id); r.status != http.StatusOK {
			return fmt.Sprintf("GET after restart: status %d", r.status)
		}
		if len(logLines(t, h.logFile("api1"), id)) == 0 {
			return "api1 served none of the requests since its restart"
		}
		return ""
	})
}

// A write is never sent twice. With api1 dead, each PUT through nginx gets
// exactly one answer, 202 (api2 took it) or 502 (nginx tried dead api1 and
// did not retry), and each reached at most one replica, once.
func TestWritesNotRetriedWithOneReplicaDown(t *testing.T) {
	h := newHarness(t)
	h.killAPI1(t)

	var accepted, refused int
	for i := range 12 {
		id, key := uniq("e2e-write"), uniq("e2e-write-key")
		r := h.put(t, key, "once", "X-Request-Id", id)
		switch r.status {
		case http.StatusAccepted:
			accepted++
		case http.StatusBadGateway:
			refused++
			if got := r.json(t)["error"]; got != "bad_gateway" {
				t.Errorf("PUT %d: 502 body error %v, want bad_gateway", i, got)
			}
		default:
			t.Fatalf("PUT %d: status %d, want 202 or 502; body %s", i, r.status, r.body)
		}
		// The replica logs a request after answering it: wait for the line.
		want := map[int]int{http.StatusAccepted: 1, http.StatusBadGateway: 0}[r.status]
		eventually(t, 2*time.Second, func() string {
			if handled := h.putsLogged(t, id); handled != want {
				return fmt.Sprintf("PUT %d (status %d) handled %d times by the replicas, want %d", i, r.status, handled, want)
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
			t.Errorf("PUT %d went to more than one upstream: %q", i, up)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("after api1's kill: %d PUTs accepted, %d refused with 502", accepted, refused)
	if accepted == 0 {
		t.Error("no PUT was accepted by api2")
	}
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
