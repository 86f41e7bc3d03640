package app

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kvstack/kvstack/internal/auth/mint"
	"github.com/kvstack/kvstack/internal/kv"
	"github.com/kvstack/kvstack/internal/token"
)

// Visible once applied (issue 24): a PUT or DELETE answered 200 to
// ?wait=applied is seen by every plain GET that starts after the answer,
// whichever path the GET takes (a cache hit, a miss, a fill racing with
// the write). Several clients write with waits while others read, on a few
// keys, so that the cache is warm with the old states and the consumer is
// busy; every read is then checked against the writes answered before it
// started.
func TestWaitedWritesAreVisibleToEveryReader(t *testing.T) {
	s := newStack(t)
	codec := s.knownTokenKey()
	s.startAPI()
	s.startConsumer()

	h := runVisibilityLoad(t, s, codec, visibilityLoad{
		keys: 3, writers: 4, readers: 4, deleteEvery: 3, duration: 3 * time.Second,
	})
	if h.acked[kv.KindPut] == 0 || h.acked[kv.KindDelete] == 0 || h.reads == 0 {
		t.Fatalf("too little happened to check: %d PUTs and %d DELETEs answered 200, %d reads",
			h.acked[kv.KindPut], h.acked[kv.KindDelete], h.reads)
	}
	stale := h.staleReads()
	for _, st := range stale[:min(len(stale), 5)] {
		t.Errorf("%s", st)
	}
	if len(stale) > 0 {
		t.Errorf("%d of %d reads were older than a write answered 200 before they started (%s)",
			len(stale), h.reads, h.staleByKind(stale))
	}
	t.Logf("checked %d reads against %d PUTs and %d DELETEs answered 200 (%d answered 202)",
		h.reads, h.acked[kv.KindPut], h.acked[kv.KindDelete], h.pending)
}

// knownTokenKey has the API sign tokens with a key the test holds, and
// returns its codec, so that the test can read the versions tokens name.
func (s *stack) knownTokenKey() *token.Codec {
	s.t.Helper()
	key := strings.Repeat("visible-", 5)
	s.apiCfg.Token.Key = key
	c, err := token.New([]byte(key))
	if err != nil {
		s.t.Fatal(err)
	}
	return c
}

type visibilityLoad struct {
	keys, writers, readers int
	// deleteEvery: every so many writes of a writer is a DELETE (0: none).
	deleteEvery int
	duration    time.Duration
}

// visibleOp is one request of the load: a write answered 200, or a read.
type visibleOp struct {
	kind       kv.Kind // KindPut or KindDelete, "" for a read
	key        string
	start, end time.Time
	// version: for a write, the state it left the key in (its own
	// version, or the newer one that superseded it); for a read, the
	// state it returned (zero: never written).
	version kv.Version
	client  int
	// pending: a write answered 202, not applied within its bound; it
	// promises nothing to check.
	pending bool
}

type visibilityHistory struct {
	byKey   map[string][]visibleOp
	acked   map[kv.Kind]int
	reads   int
	pending int // waited writes answered 202 (not applied in time): no promise to check
}

// runVisibilityLoad runs the load and returns what each client saw. A
// request that fails fails the test: the stack is healthy here.
func runVisibilityLoad(t *testing.T, s *stack, codec *token.Codec, l visibilityLoad) *visibilityHistory {
	t.Helper()
	client := &http.Client{Timeout: 15 * time.Second, Transport: mint.Bearer(&http.Transport{MaxIdleConnsPerHost: l.writers + l.readers}, s.token)}
	var (
		mu   sync.Mutex
		h    = &visibilityHistory{byKey: map[string][]visibleOp{}, acked: map[kv.Kind]int{}}
		errs []error
		wg   sync.WaitGroup
	)
	record := func(op visibleOp, err error) {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case err != nil:
			errs = append(errs, err)
		case op.pending:
			h.pending++
		default:
			h.byKey[op.key] = append(h.byKey[op.key], op)
			if op.kind == "" {
				h.reads++
			} else {
				h.acked[op.kind]++
			}
		}
	}
	key := func(r *rand.Rand) string { return fmt.Sprint("vis-", r.IntN(l.keys)) }
	deadline := time.Now().Add(l.duration)
	for c := range l.writers {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(c), 1))
			for n := 0; time.Now().Before(deadline); n++ {
				k := key(r)
				kind := kv.KindPut
				if l.deleteEvery > 0 && n%l.deleteEvery == l.deleteEvery-1 {
					kind = kv.KindDelete
				}
				op, err := waitedWrite(client, s.api, codec, kind, k, fmt.Sprintf("w%d-%d", c, n))
				op.client = c
				record(op, err)
				if err != nil {
					return
				}
				// The writer reads straight after its answer, as a client
				// told "applied" would.
				op, err = plainRead(client, s.api, codec, k)
				op.client = c
				record(op, err)
			}
		})
	}
	for c := range l.readers {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(c), 2))
			for time.Now().Before(deadline) {
				op, err := plainRead(client, s.api, codec, key(r))
				op.client = l.writers + c
				record(op, err)
				if err != nil {
					return
				}
			}
		})
	}
	wg.Wait()
	for _, err := range errs[:min(len(errs), 5)] {
		t.Error(err)
	}
	if len(errs) > 0 {
		t.FailNow()
	}
	return h
}

// waitedWrite sends PUT (or DELETE) ?wait=applied.
func waitedWrite(c *http.Client, base string, codec *token.Codec, kind kv.Kind, key, value string) (visibleOp, error) {
	body := map[string]string{"key": key}
	method := http.MethodDelete
	if kind == kv.KindPut {
		body["value"], method = value, http.MethodPut
	}
	raw, _ := json.Marshal(body)
	start := time.Now()
	status, got, err := call(c, method, base+"/api?wait=applied", string(raw))
	end := time.Now()
	if err != nil {
		return visibleOp{}, err
	}
	switch {
	case status == http.StatusAccepted:
		return visibleOp{pending: true}, nil
	case status != http.StatusOK:
		return visibleOp{}, fmt.Errorf("%s %s wait=applied = %d %v", method, key, status, got)
	}
	tok, _ := got["version"].(string)
	if stored, ok := got["stored_version"].(string); ok {
		tok = stored // superseded: the key holds the newer write's state
	}
	v, err := codec.Decode(key, tok)
	if err != nil {
		return visibleOp{}, fmt.Errorf("%s %s wait=applied = %v: version: %w", method, key, got, err)
	}
	return visibleOp{kind: kind, key: key, start: start, end: end, version: v}, nil
}

// plainRead sends GET ?key= and returns the version it read: a value's, a
// delete's (404 naming it), or zero (404 for a key never written).
func plainRead(c *http.Client, base string, codec *token.Codec, key string) (visibleOp, error) {
	start := time.Now()
	status, got, err := call(c, http.MethodGet, base+"/api?key="+url.QueryEscape(key), "")
	op := visibleOp{key: key, start: start, end: time.Now()}
	if err != nil {
		return op, err
	}
	tok, _ := got["version"].(string)
	switch {
	case status == http.StatusNotFound && tok == "":
		return op, nil
	case status != http.StatusOK && status != http.StatusNotFound:
		return op, fmt.Errorf("GET %s = %d %v", key, status, got)
	}
	if op.version, err = codec.Decode(key, tok); err != nil {
		return op, fmt.Errorf("GET %s = %d %v: version: %w", key, status, got, err)
	}
	return op, nil
}

func call(c *http.Client, method, url, body string) (int, map[string]any, error) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(context.Background(), method, url, rd)
	if err != nil {
		return 0, nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("%s %s: %w", method, url, err)
	}
	defer resp.Body.Close()
	var got map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		return 0, nil, fmt.Errorf("%s %s = %d: body: %w", method, url, resp.StatusCode, err)
	}
	return resp.StatusCode, got, nil
}

// staleRead is a read that returned a state older than that of a write
// answered 200 before the read started.
type staleRead struct {
	read, write visibleOp
}

func (s staleRead) String() string {
	return fmt.Sprintf("client %d read %s at version %s, %s after client %d's %s of it was answered 200 at version %s",
		s.read.client, s.read.key, s.read.version, s.read.start.Sub(s.write.end), s.write.client, s.write.kind, s.write.version)
}

// staleReads finds, for every read, the newest state answered 200 before it
// started, and returns the reads older than that.
func (h *visibilityHistory) staleReads() []staleRead {
	var stale []staleRead
	for _, ops := range h.byKey {
		var writes []visibleOp
		for _, op := range ops {
			if op.kind != "" {
				writes = append(writes, op)
			}
		}
		slices.SortFunc(writes, func(a, b visibleOp) int { return a.end.Compare(b.end) })
		for _, r := range ops {
			if r.kind != "" {
				continue
			}
			var floor visibleOp
			for _, w := range writes {
				if !w.end.Before(r.start) {
					break
				}
				if w.version.Newer(floor.version) {
					floor = w
				}
			}
			if floor.version.Newer(r.version) {
				stale = append(stale, staleRead{read: r, write: floor})
			}
		}
	}
	return stale
}

// staleByKind counts the stale reads by the kind of write they missed.
func (h *visibilityHistory) staleByKind(stale []staleRead) string {
	n := map[kv.Kind]int{}
	for _, s := range stale {
		n[s.write.kind]++
	}
	return fmt.Sprintf("%d missed a PUT, %d a DELETE", n[kv.KindPut], n[kv.KindDelete])
}
