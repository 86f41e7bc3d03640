package app

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/kvstack/kvstack/internal/kv"
	"github.com/kvstack/kvstack/internal/token"
)

// Reading one's writes (issue 13), on the real services, through whole
// API and consumer processes.

// bootAPI boots one more API process on the stack and returns its URL.
func (s *stack) bootAPI() string {
	s.t.Helper()
	return "http://" + boot(s.t, "api", func(ctx context.Context, ready Ready) error {
		return RunAPI(ctx, s.apiCfg, s.log, ready)
	})
}

// via is the stack talking to the API at base.
func (s *stack) via(base string) *stack {
	c := *s
	c.api = base
	return &c
}

func (s *stack) putBody(key, value string) string {
	b, _ := json.Marshal(map[string]string{"key": key, "value": value})
	return string(b)
}

// tokenOf is the version token a response names, in body and header alike.
func tokenOf(t *testing.T, r response) string {
	t.Helper()
	tok, _ := r.body["version"].(string)
	if tok == "" || r.header.Get("KV-Version") != tok {
		t.Fatalf("answer %d %v names no version, or another in KV-Version (%q)", r.status, r.body, r.header.Get("KV-Version"))
	}
	return tok
}

func getAtLeast(key, tok, extra string) string {
	return "/api?key=" + url.QueryEscape(key) + "&min_version=" + tok + extra
}

// gauge reads one unlabelled series of the API's metrics.
func gauge(t *testing.T, base, series string) float64 {
	t.Helper()
	for _, line := range strings.Split(scrape(t, base, false), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			var f float64
			if _, err := fmt.Sscan(v, &f); err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			return f
		}
	}
	t.Fatalf("no series %s in %s's metrics", series, base)
	return 0
}

func waitGauge(t *testing.T, base, series string, want float64) {
	t.Helper()
	eventually(t, 10*time.Second, fmt.Sprintf("%s = %v", series, want), func() (bool, string) {
		got := gauge(t, base, series)
		return got == want, fmt.Sprintf("%s = %v", series, got)
	})
}

// A write through one replica, read with its token through the other,
// always returns what was written: never the old value, never a 404.
func TestReadYourWritesAcrossReplicas(t *testing.T) {
	s := newStack(t)
	a, b := s.bootAPI(), s.bootAPI()
	s.startConsumer()
	replicas := []string{a, b}

	for i := range 40 {
		key := fmt.Sprint("ryw-", i%4)
		value := fmt.Sprint("v", i)
		w := s.via(replicas[i%2]).do("PUT", "/api", s.putBody(key, value))
		if w.status != http.StatusAccepted {
			t.Fatalf("PUT %d = %d %v", i, w.status, w.body)
		}
		tok := tokenOf(t, w)
		r := s.via(replicas[(i+1)%2]).do("GET", getAtLeast(key, tok, ""), "")
		if r.status != http.StatusOK || r.body["value"] != value {
			t.Fatalf("PUT %q=%q on one replica, GET with its token on the other = %d %v", key, value, r.status, r.body)
		}
		// What a read returns is at least the token's version; a later
		// read with the read's own token never goes back.
		again := s.via(replicas[i%2]).do("GET", getAtLeast(key, tokenOf(t, r), ""), "")
		if again.status != http.StatusOK || again.body["value"] != value {
			t.Fatalf("GET with the read's token = %d %v, want %q", again.status, again.body, value)
		}
	}
	// Each replica listens, and heard the consumer's news.
	for _, base := range replicas {
		if up, news := gauge(t, base, "kvstack_wait_listener_up"), gauge(t, base, "kvstack_wait_news_total"); up != 1 || news == 0 {
			t.Errorf("%s: listener up %v, news heard %v; want 1 and some", base, up, news)
		}
	}
}

// A delete's token reads 404 only once the delete is applied: before, the
// wait times out (the old value is not an answer either); after, 404
// naming the delete.
func TestDeleteTokenIsNotFoundOnlyOnceApplied(t *testing.T) {
	s := newStack(t)
	s.startAPI()
	_, stop := s.startConsumer()
	put := s.put("gone", "soon")
	s.waitStored(put)
	stop()

	d := s.do("DELETE", "/api?key=gone", "")
	tok := tokenOf(t, d)
	r := s.do("GET", getAtLeast("gone", tok, "&timeout=300ms"), "")
	if r.status != http.StatusGatewayTimeout || r.body["error"] != "version_not_reached" {
		t.Fatalf("GET with the delete's token before it applied = %d %v, want 504", r.status, r.body)
	}

	s.startConsumer()
	r = s.do("GET", getAtLeast("gone", tok, ""), "")
	if r.status != http.StatusNotFound || r.body["version"] != tok {
		t.Fatalf("GET with the delete's token once applied = %d %v, want 404 naming it", r.status, r.body)
	}
	if e, ok := s.storedEntry("gone"); !ok || !e.Deleted {
		t.Errorf("answered 404, but the store holds %+v", e)
	}
}

// An older token is answered at once, without waiting, with what is
// stored (monotonic reads): here with the consumer stopped, so that a wait
// could only have timed out.
func TestOlderTokenAnswersAtOnce(t *testing.T) {
	s := newStack(t)
	s.startAPI()
	_, stop := s.startConsumer()
	old := s.do("PUT", "/api", s.putBody("k", "old"))
	cur := s.do("PUT", "/api?wait=applied", s.putBody("k", "new"))
	if cur.status != http.StatusOK || cur.body["status"] != "applied" {
		t.Fatalf("PUT wait=applied = %d %v", cur.status, cur.body)
	}
	stop()

	r := s.do("GET", getAtLeast("k", tokenOf(t, old), ""), "")
	if r.status != http.StatusOK || r.body["value"] != "new" || r.body["version"] != tokenOf(t, cur) {
		t.Fatalf("GET with the older token = %d %v, want new at the newer version", r.status, r.body)
	}
	if n := gauge(t, s.api, `kvstack_waits_total{kind="read",outcome="satisfied"}`) +
		gauge(t, s.api, `kvstack_waits_total{kind="read",outcome="timeout"}`); n != 0 {
		t.Errorf("%v reads waited, want none", n)
	}
}

// The token of a write that a newer one superseded reads the newer state,
// and the superseded write's own wait says so.
func TestSupersededTokenReadsTheNewerState(t *testing.T) {
	s := newStack(t)
	s.startAPI()
	first := s.do("PUT", "/api", s.putBody("k", "first"))
	second := s.do("PUT", "/api", s.putBody("k", "second"))
	s.startConsumer()
	s.waitStored(acceptedOp(t, kv.KindPut, "k", "second", second))

	r := s.do("GET", getAtLeast("k", tokenOf(t, first), ""), "")
	if r.status != http.StatusOK || r.body["value"] != "second" || r.body["version"] != tokenOf(t, second) {
		t.Fatalf("GET with the superseded token = %d %v, want second", r.status, r.body)
	}
}

// A write that waits while a newer write of its key is applied first
// (here by hand, as another consumer would) learns it was superseded.
func TestWriteThatWaitsIsSuperseded(t *testing.T) {
	s := newStack(t)
	s.startAPI()
	done := make(chan response, 1)
	go func() { done <- s.do("PUT", "/api?wait=applied&timeout=20s", s.putBody("k", "mine")) }()
	waitGauge(t, s.api, "kvstack_waiters", 1)
	newer := kv.Op{Kind: kv.KindPut, Key: "k", Value: "theirs", Version: kv.NewVersion(time.Now().Add(time.Hour))}
	if _, err := s.store.ApplyBatch(context.Background(), []kv.Op{newer}); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.status != http.StatusOK || r.body["status"] != "superseded" || r.body["stored_version"] == nil {
		t.Fatalf("PUT wait=applied, superseded meanwhile = %d %v", r.status, r.body)
	}
	s.startConsumer()
	g := s.do("GET", getAtLeast("k", tokenOf(t, r), ""), "")
	if g.status != http.StatusOK || g.body["value"] != "theirs" || g.body["version"] != r.body["stored_version"] {
		t.Errorf("GET with the superseded write's token = %d %v, want theirs", g.status, g.body)
	}
}

// With the consumer stopped, a wait ends at its bound (504 for a read,
// 202 for a write, which is durable all the same); once the consumer is
// back, the same tokens read the writes.
func TestWaitsTimeOutThenSucceedOnceTheConsumerIsBack(t *testing.T) {
	s := newStack(t)
	s.startAPI()
	_, stop := s.startConsumer()
	before := s.do("PUT", "/api?wait=applied", s.putBody("k", "before"))
	if before.status != http.StatusOK {
		t.Fatalf("PUT wait=applied with the consumer up = %d %v", before.status, before.body)
	}
	stop()

	const bound = 500 * time.Millisecond
	start := time.Now()
	w := s.do("PUT", "/api?wait=applied&timeout="+bound.String(), s.putBody("k", "during"))
	if took := time.Since(start); w.status != http.StatusAccepted || w.body["status"] != "accepted" || took < bound {
		t.Fatalf("PUT wait=applied with the consumer down = %d %v after %s; want 202 after its %s bound", w.status, w.body, took, bound)
	}
	start = time.Now()
	r := s.do("GET", getAtLeast("k", tokenOf(t, w), "&timeout="+bound.String()), "")
	took := time.Since(start)
	if r.status != http.StatusGatewayTimeout || r.body["version"] != tokenOf(t, before) {
		t.Fatalf("GET with its token = %d %v; want 504 naming the version stored (%s)", r.status, r.body, tokenOf(t, before))
	}
	if took < bound || took > bound+5*time.Second {
		t.Errorf("the 504 came after %s; want it at the %s bound", took, bound)
	}

	s.startConsumer()
	r = s.do("GET", getAtLeast("k", tokenOf(t, w), ""), "")
	if r.status != http.StatusOK || r.body["value"] != "during" {
		t.Fatalf("GET with the token once the consumer is back = %d %v, want during", r.status, r.body)
	}
	for _, series := range []string{
		`kvstack_waits_total{kind="read",outcome="timeout"}`,
		`kvstack_waits_total{kind="write",outcome="timeout"}`,
		`kvstack_waits_total{kind="write",outcome="satisfied"}`,
	} {
		if gauge(t, s.api, series) < 1 {
			t.Errorf("%s: none counted", series)
		}
	}
}

// A client that cuts its connection while waiting frees its waiter.
func TestCutConnectionFreesTheWaiter(t *testing.T) {
	s := newStack(t)
	s.startAPI()
	w := s.do("PUT", "/api", s.putBody("k", "never applied"))

	conn, err := net.Dial("tcp", strings.TrimPrefix(s.api, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: kv\r\nAuthorization: Bearer %s\r\n\r\n", getAtLeast("k", tokenOf(t, w), "&timeout=30s"), s.token)
	waitGauge(t, s.api, "kvstack_waiters", 1)
	conn.Close()
	waitGauge(t, s.api, "kvstack_waiters", 0)
	if n := gauge(t, s.api, `kvstack_waits_total{kind="read",outcome="client_gone"}`); n != 1 {
		t.Errorf("client_gone waits: %v, want 1", n)
	}
}

// Tokens are input: garbled, truncated, forged (signed with another key)
// or another deployment's are 400s, never a wait or a wrong answer.
func TestBadTokensAre400(t *testing.T) {
	s := newStack(t)
	s.startAPI()
	w := s.do("PUT", "/api", s.putBody("k", "v"))
	good := tokenOf(t, w)
	var key [32]byte
	_, _ = rand.Read(key[:])
	forger, err := token.New(key[:])
	if err != nil {
		t.Fatal(err)
	}
	var v kv.Version
	v.Time = time.Now()

	other := newStack(t) // another deployment: its own schema, so its own key
	other.startAPI()
	foreign := tokenOf(t, other.do("PUT", "/api", s.putBody("k", "v")))

	for name, tok := range map[string]string{
		"garbled":              "not-a-token",
		"truncated":            good[:len(good)-4],
		"forged":               forger.Encode("k", v),
		"another deployment's": foreign,
		"binary":               url.QueryEscape("\x00\xff" + good[2:]),
	} {
		r := s.do("GET", getAtLeast("k", tok, ""), "")
		if r.status != http.StatusBadRequest || r.body["error"] != "invalid_min_version" {
			t.Errorf("%s token: %d %v, want 400 invalid_min_version", name, r.status, r.body)
		}
	}
	if r := s.do("GET", getAtLeast("other-key", good, ""), ""); r.status != http.StatusBadRequest {
		t.Errorf("a token of another key: %d %v, want 400", r.status, r.body)
	}
}

// holdAWait keeps one read of key waiting for the version of w (never
// applied: no consumer runs) until the test ends or the returned func
// cuts it, and returns once the API counts it.
func holdAWait(t *testing.T, s *stack, key string, w response) (cut func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go func() {
		req, _ := http.NewRequestWithContext(ctx, "GET", s.api+getAtLeast(key, tokenOf(t, w), "&timeout=30s"), nil)
		if resp, err := s.client.Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	waitGauge(t, s.api, "kvstack_waiters", 1)
	return cancel
}

// Beyond KV_MAX_WAITERS a request that would wait is refused with 503 and
// Retry-After; a write so refused is not published.
func TestWaitersCapIs503(t *testing.T) {
	s := newStack(t)
	s.apiCfg.Wait.MaxWaiters = 1
	s.startAPI()
	w := s.do("PUT", "/api", s.putBody("k", "v"))
	cut := holdAWait(t, s, "k", w)

	r := s.do("GET", getAtLeast("k", tokenOf(t, w), ""), "")
	if r.status != http.StatusServiceUnavailable || r.body["error"] != "too_many_waiters" || r.header.Get("Retry-After") == "" {
		t.Errorf("a second waiting read = %d %v, Retry-After %q; want 503 too_many_waiters with Retry-After", r.status, r.body, r.header.Get("Retry-After"))
	}
	r = s.do("PUT", "/api?wait=applied", s.putBody("refused", "v"))
	if r.status != http.StatusServiceUnavailable {
		t.Errorf("a waiting write = %d %v, want 503", r.status, r.body)
	}
	if n := gauge(t, s.api, `kvstack_waits_total{kind="write",outcome="rejected"}`); n != 1 {
		t.Errorf("rejected writes counted: %v, want 1", n)
	}
	cut()
	waitGauge(t, s.api, "kvstack_waiters", 0)

	// The refused write was never published: once the queue is drained up
	// to a later write, the key is still absent.
	s.startConsumer()
	s.waitStored(s.put("marker", "v"))
	if e, ok := s.storedEntry("refused"); ok {
		t.Errorf("the refused write was applied: %+v", e)
	}
}

// The trace of a PUT that waits shows the queue hop inside the request:
// its server span holds the wait, and the consumer's span of the same
// message is in the same trace, applied before the wait ended.
func TestWaitIsInTheWritesTrace(t *testing.T) {
	s := newStack(t)
	s.startAPI()
	s.startConsumer()
	r := s.do("PUT", "/api?wait=applied", s.putBody("traced", "v"))
	if r.status != http.StatusOK {
		t.Fatalf("PUT wait=applied = %d %v", r.status, r.body)
	}
	id := traceIDOf(t, r)
	requireTrace(t, id, named("PUT /api", trace.SpanKindServer), named("wait applied", trace.SpanKindInternal), applied("process "+s.mq.QueueAdd))
	var server, wait, process trace.SpanContext
	var waitParent trace.SpanContext
	var waitEnd, processStart time.Time
	for _, sp := range traceOf(id) {
		switch sp.Name() {
		case "PUT /api":
			server = sp.SpanContext()
		case "wait applied":
			wait, waitParent, waitEnd = sp.SpanContext(), sp.Parent(), sp.EndTime()
		case "process " + s.mq.QueueAdd:
			process, processStart = sp.SpanContext(), sp.StartTime()
		}
	}
	if waitParent.SpanID() != server.SpanID() {
		t.Errorf("the wait's parent is %v, want the PUT's server span %v", waitParent.SpanID(), server.SpanID())
	}
	if !process.IsValid() || !wait.IsValid() || processStart.After(waitEnd) {
		t.Errorf("the message was taken at %s, after the wait ended at %s", processStart, waitEnd)
	}
}
