package nginxtest_test

import (
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/kvstack/kvstack/lab/native"
	"github.com/kvstack/kvstack/lab/nginxtest"
)

// shipped is the default of one of the native stack's settings.
func shipped(t *testing.T, name string) int {
	t.Helper()
	for _, v := range native.Variables {
		if v.Name == name {
			n, err := strconv.Atoi(v.Default[:len(v.Default)-len(trailing(v.Default))])
			if err != nil {
				t.Fatalf("%s = %q", name, v.Default)
			}
			return n
		}
	}
	t.Fatalf("no setting %s", name)
	return 0
}

// trailing is the unit after a number ("r/s" of "500r/s").
func trailing(s string) string {
	for i, c := range s {
		if c < '0' || c > '9' {
			return s[i:]
		}
	}
	return ""
}

// One client that floods the edge, as shipped, gets its burst and its
// rate, and 429 with Retry-After for the rest; the replicas see only what
// was let through.
func TestShippedRateLimitStopsAFlood(t *testing.T) {
	if testing.Short() {
		t.Skip("runs nginx; not run with -short (make test runs it)")
	}
	rate, burst := shipped(t, "NGINX_RATE_LIMIT"), shipped(t, "NGINX_RATE_BURST")
	r := nginxtest.StartReplica(t)
	e := nginxtest.StartEdge(t, r.Addr, r.Addr, nil)
	// At least 2*burst + rate requests, and on until one was refused: a
	// machine too busy to outrun the rate at first drains the burst
	// later, and one that never does fails at the deadline.
	least := 2*burst + rate
	var (
		mu      sync.Mutex
		n       int
		counts  = map[int]int{}
		limited nginxtest.Answer
		wg      sync.WaitGroup
	)
	start := time.Now()
	deadline := start.Add(30 * time.Second)
	for range 32 {
		wg.Go(func() {
			for {
				mu.Lock()
				stop := n >= least && limited.Status != 0 || time.Now().After(deadline)
				if !stop {
					n++
				}
				mu.Unlock()
				if stop {
					return
				}
				a, err := e.Try(http.MethodGet, "/api?key=k")
				mu.Lock()
				if err != nil {
					counts[0]++
				} else {
					counts[a.Status]++
					if a.Status == http.StatusTooManyRequests {
						limited = a
					}
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	took := time.Since(start)
	// What the limit lets through in that time: the burst, and the rate.
	allowed := burst + 1 + int(float64(rate)*took.Seconds()) + rate/10
	t.Logf("%d requests in %v: %v (at most %d allowed)", n, took.Round(time.Millisecond), counts, allowed)
	if counts[http.StatusOK] < burst || counts[http.StatusOK] > allowed {
		t.Errorf("%d answered 200, want between the burst (%d) and %d", counts[http.StatusOK], burst, allowed)
	}
	if counts[http.StatusOK]+counts[http.StatusTooManyRequests] != n {
		t.Errorf("answers %v: want only 200s and 429s", counts)
	}
	if limited.Header.Get("Retry-After") == "" || errorCode(limited) != "rate_limited" {
		t.Errorf("a 429: %v %s, want Retry-After and error rate_limited", limited.Header, limited.Body)
	}
	if hits := r.Hits.Load(); hits != int64(counts[http.StatusOK]) {
		t.Errorf("the replica read %d requests, %d were let through", hits, counts[http.StatusOK])
	}
}

// One client may keep at most NGINX_WAIT_CONN_LIMIT requests waiting for
// a version at once (writes with ?wait=, reads with ?min_version=); the
// next gets 429 with Retry-After at once, and plain reads and writes are
// not counted.
func TestWaitsPerClientAreCapped(t *testing.T) {
	if testing.Short() {
		t.Skip("runs nginx; not run with -short (make test runs it)")
	}
	max := shipped(t, "NGINX_WAIT_CONN_LIMIT")
	r := nginxtest.StartReplica(t)
	e := nginxtest.StartEdge(t, r.Addr, r.Addr, nil)
	r.Stalled.Store(true) // every request waits, as a wait for a version does
	var wg sync.WaitGroup
	t.Cleanup(func() { r.Kill(); wg.Wait() })
	for i := range max {
		path := fmt.Sprintf("/api?key=k%d&min_version=v", i)
		method := http.MethodGet
		if i%2 == 0 {
			path, method = "/api?wait=applied", http.MethodPut
		}
		wg.Go(func() { _, _ = e.Try(method, path) })
	}
	nginxtest.WaitFor(t, fmt.Sprintf("%d waits at the replica", max), func() error {
		if h := r.Hits.Load(); h != int64(max) {
			return fmt.Errorf("%d", h)
		}
		return nil
	})
	for _, tc := range []struct{ method, path string }{
		{http.MethodGet, "/api?key=over&min_version=v"},
		{http.MethodPut, "/api?wait=applied"},
		{http.MethodDelete, "/api?key=over&wait=applied"},
	} {
		start := time.Now()
		a := e.Do(t, tc.method, tc.path)
		if a.Status != http.StatusTooManyRequests || errorCode(a) != "rate_limited" || a.Header.Get("Retry-After") == "" {
			t.Errorf("%s %s past %d waits: %d %v %s, want 429 rate_limited with Retry-After", tc.method, tc.path, max, a.Status, a.Header, a.Body)
		}
		if took := time.Since(start); took > time.Second {
			t.Errorf("%s %s: the 429 took %v", tc.method, tc.path, took)
		}
	}
	// A request that does not wait is not counted: it reaches the (stalled)
	// replica, which holds it until the client gives up.
	client := &http.Client{Timeout: 300 * time.Millisecond, Transport: e.Transport(t)}
	plain, _ := http.NewRequest(http.MethodGet, e.URL+"/api?key=plain", nil)
	plain.Header.Set("Authorization", "Bearer "+nginxtest.Token)
	if _, err := client.Do(plain); err == nil {
		t.Error("a plain read was answered at once; want it to reach the stalled replica")
	}
	if h := r.Hits.Load(); h != int64(max)+1 {
		t.Errorf("the replica read %d requests, want the %d waits and the plain read", h, max)
	}
}
