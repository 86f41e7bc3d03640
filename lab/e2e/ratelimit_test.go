//go:build e2e

package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The two rate limits of the stack as shipped, each driven past by a
// client of its own, so that no other test is starved: the edge's per
// address (NGINX_RATE_LIMIT, NGINX_RATE_BURST) from loopback source
// addresses no other test uses (127.x.y.z: Linux routes all of 127/8 to
// lo), the API's per token subject (KV_RATE_LIMIT, KV_RATE_BURST, per
// replica) with a subject of its own. Both run at the stack's own
// settings, whatever they are.

// floodAnswer is one answer of a flood: its status, Retry-After, and the
// error code and message of a JSON body.
type floodAnswer struct {
	status              int
	retryAfter          string
	code, message, body string
}

// flood sends GET url from each of srcs in turn (one keep-alive HTTP/1.1
// connection per worker, each from its own source address), with
// authorization when not empty, until stop says so or within has passed.
// It returns the answers by status, the first answer stop was told of
// when it stopped, and how long it took.
func flood(t *testing.T, h *harness, url, authorization string, srcs []net.IP, workers int, within time.Duration,
	stop func(counts map[int]int, a floodAnswer) bool) (counts map[int]int, last floodAnswer, took time.Duration) {
	t.Helper()
	counts = map[int]int{}
	var (
		mu   sync.Mutex
		done bool
		wg   sync.WaitGroup
	)
	start := time.Now()
	deadline := start.Add(within)
	for i := range workers {
		d := &net.Dialer{Timeout: 2 * time.Second, LocalAddr: &net.TCPAddr{IP: srcs[i%len(srcs)]}}
		tr := &http.Transport{DialContext: d.DialContext, TLSClientConfig: h.trust(t), MaxIdleConnsPerHost: 1, MaxConnsPerHost: 1}
		client := &http.Client{Timeout: 10 * time.Second, Transport: tr}
		t.Cleanup(tr.CloseIdleConnections)
		wg.Go(func() {
			for {
				mu.Lock()
				quit := done || time.Now().After(deadline)
				mu.Unlock()
				if quit {
					return
				}
				req, _ := http.NewRequest(http.MethodGet, url, nil)
				if authorization != "" {
					req.Header.Set("Authorization", authorization)
				}
				resp, err := client.Do(req)
				var a floodAnswer
				if err == nil {
					b, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					var e struct{ Error, Message string }
					_ = json.Unmarshal(b, &e)
					a = floodAnswer{status: resp.StatusCode, retryAfter: resp.Header.Get("Retry-After"), code: e.Error, message: e.Message, body: string(b)}
				}
				mu.Lock()
				counts[a.status]++ // 0: no answer
				if !done && stop(counts, a) {
					done, last = true, a
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return counts, last, time.Since(start)
}

// ownSources is n loopback addresses no other test (nor the bench, whose
// clients are 127.0.x.y) uses, when the edge listens on IPv4 loopback;
// else nil.
func ownSources(h *harness, n int) []net.IP {
	if ip := net.ParseIP(h.host()); ip == nil || ip.To4() == nil || !ip.IsLoopback() {
		return nil
	}
	a, b := byte(1+rand.IntN(254)), byte(rand.IntN(256))
	var ips []net.IP
	for i := range n {
		ips = append(ips, net.IPv4(127, a, b, byte(2+i)))
	}
	return ips
}

// perSecond reads a rate setting: "500r/s" or "500".
func perSecond(t *testing.T, name, v string) float64 {
	t.Helper()
	n, err := strconv.ParseFloat(strings.TrimSuffix(v, "r/s"), 64)
	if err != nil || n <= 0 {
		t.Fatalf("%s = %q: want requests a second (N or Nr/s)", name, v)
	}
	return n
}

// apiRateLimit is the per-subject rate and burst the running replicas
// were started with (KV_RATE_LIMIT, KV_RATE_BURST, or their defaults), as
// each logged its configuration at start; both must agree.
func apiRateLimit(t *testing.T, h *harness) (float64, int) {
	t.Helper()
	type limits struct{ RateLimit, RateBurst float64 }
	var got []limits
	for _, name := range []string{"api1", "api2"} {
		f, err := os.Open(h.logFile(name))
		if err != nil {
			t.Fatal(err)
		}
		var last *limits
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 4<<20)
		for sc.Scan() {
			if !bytes.Contains(sc.Bytes(), []byte(`"RateLimit"`)) {
				continue
			}
			var line struct {
				Config struct{ HTTP limits } `json:"config"`
			}
			if json.Unmarshal(sc.Bytes(), &line) == nil {
				last = &line.Config.HTTP
			}
		}
		f.Close()
		if last == nil {
			t.Fatalf("%s: no start-up configuration with RateLimit in %s", name, h.logFile(name))
		}
		got = append(got, *last)
	}
	if got[0] != got[1] || got[0].RateLimit <= 0 || got[0].RateBurst < 1 {
		t.Fatalf("the replicas' per-subject limits %+v: want one, set", got)
	}
	return got[0].RateLimit, int(got[0].RateBurst)
}

func settingInt(t *testing.T, h *harness, name string) int {
	t.Helper()
	n, err := strconv.Atoi(h.s.Get(name))
	if err != nil || n <= 0 {
		t.Fatalf("%s = %q: want a count", name, h.s.Get(name))
	}
	return n
}

// One client address that floods the stack's own nginx gets its burst
// and its rate (NGINX_RATE_BURST, NGINX_RATE_LIMIT as the stack runs
// them), then 429 rate_limited with Retry-After from nginx.
func TestEdgeRateLimitThroughTheStacksNginx(t *testing.T) {
	h := newHarness(t)
	rate := perSecond(t, "NGINX_RATE_LIMIT", h.s.Get("NGINX_RATE_LIMIT"))
	burst := settingInt(t, h, "NGINX_RATE_BURST")
	srcs := ownSources(h, 1)
	if srcs == nil {
		// The edge is not on IPv4 loopback: flood from the address every
		// test uses, and give its bucket back before the next test.
		srcs = []net.IP{nil}
		wait := time.Duration(float64(burst)/rate*float64(time.Second)) + time.Second
		t.Logf("the edge listens on %s: flooding from the tests' own address; %s to refill after", h.host(), wait)
		t.Cleanup(func() { time.Sleep(wait) })
	}
	// At least 2*burst + rate requests, and on until one was refused: a
	// busy machine that cannot outrun the rate at first drains the burst
	// later; one that never does fails at the deadline.
	least := 2*burst + int(rate)
	counts, limited, took := flood(t, h, h.nginx+"/healthz", "", srcs, 32, 60*time.Second, func(c map[int]int, a floodAnswer) bool {
		return a.status == http.StatusTooManyRequests && c[http.StatusOK]+c[http.StatusTooManyRequests] >= least
	})
	allowed := burst + 1 + int(rate*took.Seconds()) + int(rate)/10
	t.Logf("from %v: %v in %v (the limit lets %d through: burst %d, %g/s)", srcs[0], counts, took.Round(time.Millisecond), allowed, burst, rate)
	if limited.status != http.StatusTooManyRequests {
		t.Fatalf("no 429 in %v: %v", took, counts)
	}
	if limited.code != "rate_limited" || limited.retryAfter == "" || !strings.Contains(limited.message, "from this client") {
		t.Errorf("a 429: Retry-After %q, body %s; want nginx's rate_limited with Retry-After", limited.retryAfter, limited.body)
	}
	if ok := counts[http.StatusOK]; ok < burst || ok > allowed {
		t.Errorf("%d answered 200, want between the burst (%d) and %d", ok, burst, allowed)
	}
	if n := counts[http.StatusOK] + counts[http.StatusTooManyRequests]; n != sum(counts) {
		t.Errorf("answers %v: want only 200s and 429s", counts)
	}
}

// One token subject that sends more than KV_RATE_LIMIT a second (burst
// KV_RATE_BURST) to each replica gets the API's own 429 rate_limited with
// Retry-After, through nginx: the client spreads over many addresses, so
// the edge lets it through and the API's per-subject limit is what holds.
// The token is `make token`'s, of a subject of its own.
func TestAPIRateLimitPerSubjectThroughNginx(t *testing.T) {
	h := newHarness(t)
	rate, burst := apiRateLimit(t, h)
	sub := uniq("e2e-rate")
	out, err := exec.Command("make", "-s", "-C", h.root, "token", "SUB="+sub, "ROLE=reader").Output()
	if err != nil {
		t.Fatalf("make token SUB=%s ROLE=reader: %v", sub, err)
	}
	token := "Bearer " + strings.TrimSpace(string(out))
	key := uniq("e2e-rate-key")
	body, _ := json.Marshal(map[string]string{"key": key, "value": "v"})
	if r := h.do(t, http.MethodPut, "/api?wait=applied", body); r.status != http.StatusOK {
		t.Fatalf("PUT %s?wait=applied: %d %s", key, r.status, r.body)
	}
	// 32 addresses of its own, one a worker: each stays far below the
	// edge's per-address rate while together they pass the API's.
	srcs := ownSources(h, 32)
	if srcs == nil {
		t.Fatalf("the edge listens on %s, not IPv4 loopback: this test needs source addresses of its own (127.x.y.z) to pass the edge's per-address limit", h.host())
	}
	counts, limited, took := flood(t, h, h.nginx+"/api?key="+key, token, srcs, 32, 90*time.Second, func(_ map[int]int, a floodAnswer) bool {
		return a.status == http.StatusTooManyRequests && !strings.Contains(a.message, "from this client")
	})
	replicas := 2
	allowed := replicas * (burst + 1 + int(rate*took.Seconds()) + int(rate)/10)
	t.Logf("subject %s from %d addresses: %v in %v (the API lets %d through: %d replicas, burst %d, %g/s each)", sub, len(srcs), counts, took.Round(time.Millisecond), allowed, replicas, burst, rate)
	if limited.status != http.StatusTooManyRequests {
		t.Fatalf("no 429 of the API in %v: %v", took, counts)
	}
	if limited.code != "rate_limited" || limited.retryAfter == "" || !strings.Contains(limited.message, "KV_RATE_LIMIT") {
		t.Errorf("the API's 429: Retry-After %q, body %s; want rate_limited naming KV_RATE_LIMIT, with Retry-After", limited.retryAfter, limited.body)
	}
	if s, err := strconv.Atoi(limited.retryAfter); err != nil || s < 1 {
		t.Errorf("Retry-After %q: want whole seconds, at least 1", limited.retryAfter)
	}
	if ok := counts[http.StatusOK]; ok < burst || ok > allowed {
		t.Errorf("%d answered 200, want between one replica's burst (%d) and %d", ok, burst, allowed)
	}
	if n := counts[http.StatusOK] + counts[http.StatusTooManyRequests]; n != sum(counts) {
		t.Errorf("answers %v: want only 200s and 429s", counts)
	}
	// Another subject is not limited by this one's flood.
	if r := h.do(t, http.MethodGet, "/api?key="+key, nil); r.status != http.StatusOK {
		t.Errorf("GET as another subject right after: %d %s", r.status, r.body)
	}
}

func sum(m map[int]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}
