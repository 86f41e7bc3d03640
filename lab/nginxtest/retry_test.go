package nginxtest_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kvstack/kvstack/lab/nginxtest"
)

// request is one kind of request the edge routes to a location of its own.
type request struct{ method, path string }

var (
	writes = []request{
		{http.MethodPut, "/api"},
		{http.MethodDelete, "/api?key=k"},
		{http.MethodPut, "/api?wait=applied"},
		{http.MethodDelete, "/api?key=k&wait=applied"},
	}
	reads = []request{
		{http.MethodGet, "/api?key=k"},
		{http.MethodGet, "/api?key=k&min_version=v"},
	}
)

func (r request) String() string { return r.method + " " + r.path }

// A replica that gives no answer (it read the write and dropped the
// connection, as a replica killed in the middle of it; or it refuses
// connections, as one that is dead): every request, write or read, is
// tried once more on the other replica, which answers it.
func TestRequestsRetriedWhenAReplicaGivesNoAnswer(t *testing.T) {
	if testing.Short() {
		t.Skip("runs nginx; not run with -short (make test runs it)")
	}
	failures := map[string]func(*nginxtest.Replica){
		"dropped after reading": func(r *nginxtest.Replica) { r.Broken.Store(true) },
		"refused":               func(r *nginxtest.Replica) { r.Kill() },
	}
	for name, fail := range failures {
		for _, req := range append(writes, reads...) {
			t.Run(name+"/"+req.String(), func(t *testing.T) {
				t.Parallel()
				bad, good := nginxtest.StartReplica(t), nginxtest.StartReplica(t)
				fail(bad)
				e := nginxtest.StartEdge(t, bad.Addr, good.Addr, nil)
				// nginx tries the first server first; after a failure it
				// leaves it alone for fail_timeout (2s), so one request or
				// two find it.
				retried := false
				for sent := 1; !retried; sent++ {
					a := e.Do(t, req.method, req.path)
					if want := answer(req); a.Status != want || !strings.Contains(a.Body, good.Addr) {
						t.Fatalf("%s: %d %s, want %d from %s", req, a.Status, a.Body, want, good.Addr)
					}
					up := upstreams(t, e, sent)[sent-1]
					retried = up == bad.Addr+", "+good.Addr
					if !retried && up != good.Addr {
						t.Fatalf("%s went to %q", req, up)
					}
					if sent == 10 {
						t.Fatalf("%d requests, none tried on %s first: the test proved nothing", sent, bad.Addr)
					}
				}
			})
		}
	}
}

// answer is the status a working stand-in replica answers req with.
func answer(req request) int {
	if req.method == http.MethodGet {
		return http.StatusOK
	}
	return http.StatusAccepted
}

// A replica killed -9 in the middle of a write, under a load of writes of
// every kind: no client sees an error, every write is answered 202 by one
// replica or the other, and the one in hand when it died is among those
// nginx sent again.
func TestWritesSurviveAReplicaKill(t *testing.T) {
	if testing.Short() {
		t.Skip("runs nginx; not run with -short (make test runs it)")
	}
	a, b := nginxtest.StartReplica(t), nginxtest.StartReplica(t)
	a.DieOnWrite(20)
	e := nginxtest.StartEdge(t, a.Addr, b.Addr, nil)

	const clients, each = 4, 50
	var (
		mu      sync.Mutex
		answers = map[string]int{} // status and the replica that gave it
		wg      sync.WaitGroup
	)
	for c := range clients {
		wg.Go(func() {
			for i := range each {
				req := writes[(c+i)%len(writes)]
				got, err := e.Try(req.method, req.path)
				if err != nil {
					t.Error(err)
				}
				by := "neither"
				for name, r := range map[string]*nginxtest.Replica{"a": a, "b": b} {
					if strings.Contains(got.Body, r.Addr) {
						by = name
					}
				}
				mu.Lock()
				answers[fmt.Sprintf("%d by %s", got.Status, by)]++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	// a answered writes until it died reading its 20th (those in its hands
	// then unanswered); b all the others.
	byA := answers["202 by a"]
	if byA+answers["202 by b"] != clients*each || byA == 0 || int64(byA) >= a.Writes.Load() || a.Writes.Load() < 20 {
		t.Errorf("answers %v (a read %d writes): want every one 202, by a until it died, by b after", answers, a.Writes.Load())
	}
	var retried int
	for _, up := range upstreams(t, e, clients*each) {
		if up == a.Addr+", "+b.Addr {
			retried++
		}
	}
	if retried == 0 {
		t.Error("no write was sent to b after failing on a: the one in hand when a died was lost or never retried")
	}
	t.Logf("%d writes, %d tried on the killed replica then answered by the other", clients*each, retried)
}

// The API's own answers are passed on as they are, never tried again on
// the other replica: a 503 (a publish not confirmed, the cap of waiters)
// or a 504 (a wait's bound passed) of a write, whose replica is not left
// alone as failed either.
func TestWriteAnswersOfTheAPINotRetried(t *testing.T) {
	if testing.Short() {
		t.Skip("runs nginx; not run with -short (make test runs it)")
	}
	for _, status := range []int{http.StatusServiceUnavailable, http.StatusGatewayTimeout} {
		for _, req := range writes {
			t.Run(http.StatusText(status)+"/"+req.String(), func(t *testing.T) {
				t.Parallel()
				a, b := nginxtest.StartReplica(t), nginxtest.StartReplica(t)
				a.WriteStatus.Store(int64(status))
				e := nginxtest.StartEdge(t, a.Addr, b.Addr, nil)
				// One client, one connection, one nginx worker: its round
				// robin alternates a and b, unless a is left alone as failed.
				const sent = 10
				for range sent {
					before := b.Writes.Load()
					got := e.Do(t, req.method, req.path)
					switch {
					case strings.Contains(got.Body, a.Addr):
						if got.Status != status || b.Writes.Load() != before {
							t.Errorf("%s: %d %s, b saw it %d times; want a's %d, passed on, not retried",
								req, got.Status, got.Body, b.Writes.Load()-before, status)
						}
					case got.Status != http.StatusAccepted || !strings.Contains(got.Body, b.Addr):
						t.Errorf("%s: %d %s, want a's %d or b's 202", req, got.Status, got.Body, status)
					}
				}
				if a.Writes.Load() < sent/2-1 || a.Writes.Load()+b.Writes.Load() != sent {
					t.Errorf("a read %d writes, b %d of %d: want each sent once, a not left alone as failed", a.Writes.Load(), b.Writes.Load(), sent)
				}
			})
		}
	}
}

// A read's 503 is an answer of the API's own: a dependency that every
// replica shares is down (a cache miss while PostgreSQL is). It is passed
// on as it is, not tried on the other replica, which would answer the same,
// and it leaves neither replica alone as failed: the reads they can still
// serve (cache hits) go on being served, never nginx's 502 "no live
// upstreams" for fail_timeout.
func TestReadAnswersOfTheAPINotRetried(t *testing.T) {
	if testing.Short() {
		t.Skip("runs nginx; not run with -short (make test runs it)")
	}
	a, b := nginxtest.StartReplica(t), nginxtest.StartReplica(t)
	e := nginxtest.StartEdge(t, a.Addr, b.Addr, nil)
	paths := []string{"/api?key=miss&status=503", "/api?key=miss&min_version=v&status=503", "/api/all?status=503"}
	for i, path := range paths {
		for j := range 2 {
			got := e.Do(t, http.MethodGet, path)
			if got.Status != http.StatusServiceUnavailable || !strings.Contains(got.Body, `"replica"`) {
				t.Errorf("GET %s: %d %s, want the replica's own 503", path, got.Status, got.Body)
			}
			if up := upstreams(t, e, 2*(2*i+j)+1)[2*(2*i+j)]; strings.Contains(up, ",") {
				t.Errorf("GET %s was tried on %s: a 503 of the API's is not retried", path, up)
			}
			hit := e.Do(t, http.MethodGet, "/api?key=hit")
			if hit.Status != http.StatusOK {
				t.Fatalf("a read after the 503s of %s: %d %s, want 200 from a replica not left alone", path, hit.Status, hit.Body)
			}
		}
	}
}

// A replica that stops gracefully (the API at the end of its drain, with
// no drain delay) under reads and writes fails none of them: a request
// that finds its listener closed, or a keep-alive connection it closed,
// got no answer and nginx sends it to the other replica.
func TestReplicaStoppingFailsNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("runs nginx; not run with -short (make test runs it)")
	}
	a, b := nginxtest.StartReplica(t), nginxtest.StartReplica(t)
	// Four clients as fast as nginx answers, from one address: far past
	// the shipped per-client rate, which this test is not about.
	e := nginxtest.StartEdge(t, a.Addr, b.Addr, map[string]string{"NGINX_RATE_LIMIT": "100000r/s", "NGINX_RATE_BURST": "100000"})
	var (
		mu      sync.Mutex
		answers = map[string]int{}
		wg      sync.WaitGroup
		done    = make(chan struct{})
	)
	all := append(writes, reads...)
	for c := range 4 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-done:
					return
				default:
				}
				req := all[(c+i)%len(all)]
				got, err := e.Try(req.method, req.path)
				status := got.Status
				if err != nil {
					t.Error(err)
				}
				mu.Lock()
				answers[fmt.Sprintf("%d", status)]++
				mu.Unlock()
			}
		})
	}
	time.Sleep(200 * time.Millisecond)
	a.Stop()
	byA := a.Hits.Load()
	time.Sleep(300 * time.Millisecond)
	close(done)
	wg.Wait()
	t.Logf("answers %v; %d requests read by a before it stopped, %d by b", answers, byA, b.Hits.Load())
	if a.Hits.Load() != byA || b.Hits.Load() <= byA {
		t.Errorf("a read %d requests after it stopped, b %d in all: the test proved nothing", a.Hits.Load()-byA, b.Hits.Load())
	}
	for status := range answers {
		if status != "200" && status != "202" {
			t.Errorf("answers %v: want every one 200 or 202", answers)
		}
	}
}

// A write whose replica took it and answers nothing within
// proxy_read_timeout is not sent again: that replica may still publish it,
// stamped later than what the client writes next. The client gets nginx's
// 504 after the read timeout (5s), and the other replica never sees it.
func TestWriteNotRetriedAfterItsReadTimeout(t *testing.T) {
	if testing.Short() {
		t.Skip("runs nginx for 5s; not run with -short (make test runs it)")
	}
	a, b := nginxtest.StartReplica(t), nginxtest.StartReplica(t)
	a.Stalled.Store(true)
	e := nginxtest.StartEdge(t, a.Addr, b.Addr, nil)
	start := time.Now()
	got := e.Do(t, http.MethodPut, "/api")
	if got.Status != http.StatusGatewayTimeout || !strings.Contains(got.Body, "gateway_timeout") {
		t.Errorf("PUT to a stalled replica: %d %s, want nginx's 504 gateway_timeout", got.Status, got.Body)
	}
	if a.Writes.Load() != 1 || b.Writes.Load() != 0 {
		t.Errorf("the stalled replica read %d writes, the other %d: want 1 and 0", a.Writes.Load(), b.Writes.Load())
	}
	t.Logf("answered %d after %v", got.Status, time.Since(start).Round(time.Millisecond))
}

// nginx's own errors are JSON: 502 when no replica answers, 429 past the
// per-client rate, 404 off the routes.
func TestNginxErrorsAreJSON(t *testing.T) {
	if testing.Short() {
		t.Skip("runs nginx; not run with -short (make test runs it)")
	}
	dead1, dead2 := nginxtest.FreeAddr(t), nginxtest.FreeAddr(t)
	e := nginxtest.StartEdge(t, dead1, dead2, map[string]string{"NGINX_RATE_LIMIT": "1r/s", "NGINX_RATE_BURST": "3"})
	tests := []struct {
		method, path string
		status       int
		code         string
	}{
		{http.MethodGet, "/api?key=k", http.StatusBadGateway, "bad_gateway"},
		{http.MethodPut, "/api", http.StatusBadGateway, "bad_gateway"},
		{http.MethodGet, "/metrics", http.StatusNotFound, "not_found"},
	}
	for _, tt := range tests {
		a := e.Do(t, tt.method, tt.path)
		if a.Status != tt.status || errorCode(a) != tt.code {
			t.Errorf("%s %s: %d %s, want %d with error %s", tt.method, tt.path, a.Status, a.Body, tt.status, tt.code)
		}
		if ct := a.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("%s %s: Content-Type %q, want application/json", tt.method, tt.path, ct)
		}
	}
	// The burst is spent: the next ones are limited.
	var limited nginxtest.Answer
	for range 10 {
		if limited = e.Do(t, http.MethodGet, "/healthz"); limited.Status == http.StatusTooManyRequests {
			break
		}
	}
	if limited.Status != http.StatusTooManyRequests || errorCode(limited) != "rate_limited" {
		t.Fatalf("past the rate: %d %s, want 429 rate_limited", limited.Status, limited.Body)
	}
	if limited.Header.Get("Retry-After") == "" || limited.Header.Get("X-Request-Id") == "" {
		t.Errorf("429 headers %v: want Retry-After and X-Request-Id", limited.Header)
	}
}

func errorCode(a nginxtest.Answer) string {
	var body struct{ Error string }
	json.Unmarshal([]byte(a.Body), &body)
	return body.Error
}

// upstreams are the upstream_addr of the first n lines of the edge's
// access log ("a, b" when nginx tried a, then b), waiting for them: nginx
// logs a request once it has answered it.
func upstreams(t *testing.T, e nginxtest.Edge, n int) []string {
	t.Helper()
	var ups []string
	nginxtest.WaitFor(t, "access log lines", func() error {
		f, err := os.Open(e.AccessLog)
		if err != nil {
			return err
		}
		defer f.Close()
		ups = ups[:0]
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			var line struct {
				Upstream string `json:"upstream_addr"`
			}
			if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
				return err
			}
			ups = append(ups, line.Upstream)
		}
		if len(ups) < n {
			return fmt.Errorf("%d of %d", len(ups), n)
		}
		return sc.Err()
	})
	return ups
}
