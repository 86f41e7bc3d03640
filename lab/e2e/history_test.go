//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kvstack/kvstack/lab/history"
)

// The three consistency promises (docs/DESIGN.md), each checked with
// porcupine (lab/history) on the history of 8 concurrent clients on 3
// keys through nginx for a few seconds. An illegal history's
// visualisation is written under the stack's directory, named in the
// failure.
func TestHistoriesThroughNginx(t *testing.T) {
	h := newHarness(t)
	dir := filepath.Join(h.dir(), "histories")

	// Waited writes and plain reads: one register per key.
	t.Run("linearizable", func(t *testing.T) {
		keys := historyKeys("e2e-lin")
		rec := h.runClients(t, 8, 3*time.Second, func(ctx context.Context, c *history.Session, r *rand.Rand, n int) {
			key := keys[r.IntN(len(keys))]
			switch {
			case c.ID >= 4:
				c.Client.Get(ctx, key, "")
			case n%4 == 3:
				c.Write(ctx, history.Delete, key, "", true)
			default:
				c.Write(ctx, history.Put, key, fmt.Sprintf("c%d-%d", c.ID, n), true)
			}
		})
		res, err := history.CheckLinearizable(rec.Ops(), dir)
		h.judge(t, rec, res, err)
	})

	// Plain writes, and reads carrying the newest token the client holds
	// for the key (its own writes' and its reads').
	t.Run("sessions", func(t *testing.T) {
		keys := historyKeys("e2e-ses")
		rec := h.runClients(t, 8, 3*time.Second, func(ctx context.Context, s *history.Session, r *rand.Rand, n int) {
			key := keys[r.IntN(len(keys))]
			switch r.IntN(6) {
			case 0:
				s.Write(ctx, history.Put, key, fmt.Sprintf("c%d-%d", s.ID, n), false)
			case 1:
				s.Write(ctx, history.Delete, key, "", false)
			default:
				s.Get(ctx, key)
			}
		})
		res, err := history.CheckSessions(rec.Ops(), dir)
		h.judge(t, rec, res, err)
	})

	// Plain writes; once each key's newest accepted write was read with
	// its token (applied), plain reads through both replicas.
	t.Run("convergence", func(t *testing.T) {
		keys := historyKeys("e2e-lww")
		rec := h.runClients(t, 8, 2*time.Second, func(ctx context.Context, c *history.Session, r *rand.Rand, n int) {
			key := keys[r.IntN(len(keys))]
			if r.IntN(5) == 0 {
				c.Write(ctx, history.Delete, key, "", false)
			} else {
				c.Write(ctx, history.Put, key, fmt.Sprintf("c%d-%d", c.ID, n), false)
			}
		})
		newest := map[string]history.Op{}
		for _, o := range rec.Ops() {
			if o.Outcome == history.Accepted && o.Version.Newer(newest[o.Key].Version) {
				newest[o.Key] = o
			}
		}
		waiter := h.historyClient(len(keys), &history.Recorder{})
		for _, key := range keys {
			if o := waiter.Get(context.Background(), key, newest[key].Token); o.Outcome != history.Done {
				t.Fatalf("waiting for %s's newest write: %s", key, o)
			}
		}
		quiesced := time.Now()
		for i := range 2 {
			c := h.historyClient(8+i, rec)
			for _, key := range keys {
				for range 3 {
					c.Get(context.Background(), key, "")
				}
			}
		}
		res, err := history.CheckConvergence(rec.Ops(), quiesced, dir)
		h.judge(t, rec, res, err)
	})
}

func historyKeys(prefix string) []string {
	return []string{uniq(prefix), uniq(prefix), uniq(prefix)}
}

func (h *harness) historyClient(id int, rec *history.Recorder) *history.Client {
	return &history.Client{ID: id, Base: h.nginx, HTTP: h.client, Rec: rec}
}

// clientPace keeps 8 clients (one address) under nginx's per-client rate
// limit (NGINX_RATE_LIMIT, 500 r/s): past it, 429s would check nothing.
const clientPace = 20 * time.Millisecond

// minHistoryOps is what the clients record at the least before a run
// ends: fewer would check too little to mean anything (judge).
const minHistoryOps = 200

// runClients runs n clients, each calling step one request at a time
// (n counts its calls), until d has passed and together they have made
// minHistoryOps calls, or 10×d has passed on a machine too busy for that,
// and returns what they recorded. A client is a session: its Get carries
// its newest token, its Client's does not. Each client's last request is
// let finish: one cut short would end unknown, and a few unknown ends
// grow porcupine's search past its bound (the check then undecided).
func (h *harness) runClients(t *testing.T, n int, d time.Duration, step func(ctx context.Context, c *history.Session, r *rand.Rand, n int)) *history.Recorder {
	t.Helper()
	rec := &history.Recorder{}
	start := time.Now()
	var calls atomic.Int64
	done := func() bool {
		ran := time.Since(start)
		return ran >= 10*d || ran >= d && calls.Load() >= minHistoryOps
	}
	var wg sync.WaitGroup
	for id := range n {
		c := history.NewSession(h.historyClient(id, rec))
		r := rand.New(rand.NewPCG(uint64(id), uint64(time.Now().UnixNano())))
		wg.Go(func() {
			for i := 0; !done(); i++ {
				step(context.Background(), c, r, i)
				calls.Add(1)
				time.Sleep(clientPace)
			}
		})
	}
	wg.Wait()
	return rec
}

// judge fails the test when the check failed, when porcupine did not
// decide, or when too little was answered for the check to mean
// something.
func (h *harness) judge(t *testing.T, rec *history.Recorder, res history.Result, err error) {
	t.Helper()
	outcomes := map[history.Outcome]int{}
	for _, o := range rec.Ops() {
		outcomes[o.Outcome]++
	}
	t.Logf("%s; outcomes %v", res, outcomes)
	if err != nil {
		t.Fatal(err)
	}
	if res.Undecided() {
		t.Fatalf("porcupine did not decide: %s", res)
	}
	if res.Ops < minHistoryOps/2 {
		t.Fatalf("only %d operations checked: too few to mean anything", res.Ops)
	}
}
