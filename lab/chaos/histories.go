package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"time"

	"github.com/kvstack/kvstack/lab/history"
)

// historyClients: how many waiting writers, readers and sessions the
// linearizable and session checks each get, on historyKeys keys of their
// own: few keys, so that clients contend for them.
const (
	historyClients = 2
	historyKeys    = 3
)

// histories are what a fault's clients did, as lab/history records it,
// and what the checks found.
type histories struct {
	lww, lin, ses    history.Recorder
	linKeys, sesKeys []string
	results          []history.Result
}

func newHistories(prefix string) *histories {
	h := &histories{}
	for i := range historyKeys {
		// Not "<prefix>-…": the ledger's check reads those rows.
		h.linKeys = append(h.linKeys, fmt.Sprintf("%s.lin%d", prefix, i))
		h.sesKeys = append(h.sesKeys, fmt.Sprintf("%s.ses%d", prefix, i))
	}
	return h
}

// waiter writes with ?wait=applied, unique values, a DELETE every fourth.
func (l *load) waiter(ctx context.Context, c *history.Client) {
	r := rand.New(rand.NewPCG(uint64(c.ID), uint64(time.Now().UnixNano())))
	for seq := 0; ctx.Err() == nil; seq++ {
		key := l.h.linKeys[r.IntN(historyKeys)]
		if seq%4 == 3 {
			c.Write(context.Background(), history.Delete, key, "", true)
		} else {
			c.Write(context.Background(), history.Put, key, fmt.Sprintf("%s/c%d/%d", key, c.ID, seq), true)
		}
		sleepCtx(ctx, l.pace)
	}
}

// linReader reads the waiters' keys, plainly.
func (l *load) linReader(ctx context.Context, c *history.Client) {
	r := rand.New(rand.NewPCG(uint64(c.ID), uint64(time.Now().UnixNano())))
	for ctx.Err() == nil {
		c.Get(context.Background(), l.h.linKeys[r.IntN(historyKeys)], "")
		sleepCtx(ctx, l.pace)
	}
}

// session writes plainly and reads with the newest token it holds.
func (l *load) session(ctx context.Context, s *history.Session) {
	r := rand.New(rand.NewPCG(uint64(s.ID), uint64(time.Now().UnixNano())))
	for seq := 0; ctx.Err() == nil; seq++ {
		key := l.h.sesKeys[r.IntN(historyKeys)]
		switch r.IntN(6) {
		case 0:
			s.Write(context.Background(), history.Put, key, fmt.Sprintf("%s/s%d/%d", key, s.ID, seq), false)
		case 1:
			s.Write(context.Background(), history.Delete, key, "", false)
		default:
			s.Get(context.Background(), key)
		}
		sleepCtx(ctx, l.pace)
	}
}

// checkHistories runs once the load stopped and the queues drained: it
// reads every key of the writers through nginx (twice: either replica)
// and checks the three histories. An illegal one fails the fault and its
// visualisation is left in the campaign's directory.
func (e *env) checkHistories(ctx context.Context, r *result, l *load, f fault) {
	quiesced := time.Now()
	c := l.historyClient(l.writers+1, &l.h.lww)
	for range 2 {
		for _, key := range l.keys {
			c.Get(ctx, key, "")
		}
	}
	dir := filepath.Join(e.s.dir, "histories")
	checks := []func() (history.Result, error){
		func() (history.Result, error) { return history.CheckLinearizable(l.h.lin.Ops(), dir) },
		func() (history.Result, error) { return history.CheckSessions(l.h.ses.Ops(), dir) },
		func() (history.Result, error) { return history.CheckConvergence(l.h.lww.Ops(), quiesced, dir) },
	}
	for i, check := range checks {
		res, err := check()
		l.h.results = append(l.h.results, res)
		switch {
		case err == nil && res.Undecided():
			r.example(fmt.Sprintf("undecided (porcupine's search ran out of time; no anomaly found): %s", res))
		case err == nil:
		case i == 0 && f.knownIllegal != "" && res.Visualization != "":
			r.example(fmt.Sprintf("known defect (%s): %v", f.knownIllegal, err))
		default:
			r.fail("%v", err)
		}
	}
	r.histories = l.h.results
}
