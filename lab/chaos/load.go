package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/kvstack/kvstack/lab/history"
	"github.com/kvstack/kvstack/lab/native"
)

// load drives clients through nginx until its context ends, and records
// their histories (lab/history): the writers' plain writes (also in the
// ledger) for the convergence check; waiting writers and readers on keys
// of their own for the linearizable one; sessions on keys of their own for
// the token check.
type load struct {
	nginx   string
	client  *http.Client
	keys    []string
	writers int
	readers int
	pace    time.Duration // pause between one client's requests
	led     *ledger
	h       *histories
}

// clientTimeout: a request still unanswered after this is a hang.
const clientTimeout = 15 * time.Second

// newClient is a client of the chaos stack's edge carrying an admin token
// signed by that stack's key (make token's).
func newClient(s *native.Settings) (*http.Client, error) {
	transport, err := native.EdgeTransport(s, 64)
	if err != nil {
		return nil, err
	}
	return native.Client(s, "chaos", transport, clientTimeout)
}

func (l *load) run(ctx context.Context) {
	var wg sync.WaitGroup
	for w := range l.writers {
		c := l.historyClient(w, &l.h.lww)
		wg.Go(func() { l.writer(ctx, c) })
	}
	for range l.readers {
		wg.Go(func() { l.reader(ctx) })
	}
	for i := range historyClients {
		waiter, reader := l.historyClient(i, &l.h.lin), l.historyClient(historyClients+i, &l.h.lin)
		session := history.NewSession(l.historyClient(i, &l.h.ses))
		wg.Go(func() { l.waiter(ctx, waiter) })
		wg.Go(func() { l.linReader(ctx, reader) })
		wg.Go(func() { l.session(ctx, session) })
	}
	wg.Wait()
}

func (l *load) historyClient(id int, rec *history.Recorder) *history.Client {
	return &history.Client{ID: id, Base: l.nginx, HTTP: l.client, Rec: rec}
}

func (l *load) writer(ctx context.Context, c *history.Client) {
	r := rand.New(rand.NewPCG(uint64(c.ID), uint64(time.Now().UnixNano())))
	for seq := 0; ctx.Err() == nil; seq++ {
		key := l.keys[r.IntN(len(l.keys))]
		if r.IntN(5) == 0 {
			l.write(c, key, history.Delete, "")
		} else {
			// Unique values: a stored value names the one attempt that wrote it.
			l.write(c, key, history.Put, fmt.Sprintf("%s/w%d/%d", key, c.ID, seq))
		}
		sleepCtx(ctx, l.pace)
	}
}

func (l *load) reader(ctx context.Context) {
	r := rand.New(rand.NewPCG(rand.Uint64(), 7))
	for ctx.Err() == nil {
		key := l.keys[r.IntN(len(l.keys))]
		start := time.Now()
		resp, err := l.client.Get(l.nginx + "/api?key=" + url.QueryEscape(key))
		ok, status := false, "transport error"
		rd := readRec{at: start}
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			ok, status = resp.StatusCode == 200 || resp.StatusCode == 404, strconv.Itoa(resp.StatusCode)
			rd.status, rd.fromCache = resp.StatusCode, bytes.Contains(body, []byte(`"source":"redis"`))
		}
		l.led.read(ok, status, time.Since(start))
		l.led.readDone(rd)
		sleepCtx(ctx, l.pace)
	}
}

// write sends one plain PUT or DELETE (not bound to ctx: the load's end
// must not cut a write short) and records it in the history and the
// ledger.
func (l *load) write(c *history.Client, key string, kind history.Kind, value string) attempt {
	o := c.Write(context.Background(), kind, key, value, false)
	a := attempt{Key: key, Op: string(kind), Value: value, Start: o.Call, End: o.Return, Status: o.Status, Err: o.Err}
	if o.Outcome == history.Accepted {
		a.OpID, a.TS = o.Version.OpID.String(), o.Version.Time
	}
	l.led.add(a)
	return a
}

func sleepCtx(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
