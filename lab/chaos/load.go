package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/kvstack/kvstack/lab/native"
)

// load drives writers and readers through nginx until its context ends.
type load struct {
	nginx   string
	client  *http.Client
	keys    []string
	writers int
	readers int
	pace    time.Duration // pause between one client's requests
	led     *ledger
}

// clientTimeout: a request still unanswered after this is a hang.
const clientTimeout = 15 * time.Second

// newClient is a client of the chaos stack's edge carrying an admin token
// signed by that stack's key (make token's).
func newClient(s *native.Settings) (*http.Client, error) {
	return native.Client(s, "chaos", &http.Transport{MaxIdleConnsPerHost: 64}, clientTimeout)
}

func (l *load) run(ctx context.Context) {
	var wg sync.WaitGroup
	for w := range l.writers {
		wg.Go(func() { l.writer(ctx, w) })
	}
	for range l.readers {
		wg.Go(func() { l.reader(ctx) })
	}
	wg.Wait()
}

func (l *load) writer(ctx context.Context, id int) {
	r := rand.New(rand.NewPCG(uint64(id), uint64(time.Now().UnixNano())))
	for seq := 0; ctx.Err() == nil; seq++ {
		key := l.keys[r.IntN(len(l.keys))]
		if r.IntN(5) == 0 {
			l.led.add(write(l.client, l.nginx, key, "delete", ""))
		} else {
			// Unique values: a stored value names the one attempt that wrote it.
			l.led.add(write(l.client, l.nginx, key, "put", fmt.Sprintf("%s/w%d/%d", key, id, seq)))
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
		ok := false
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			ok = resp.StatusCode == 200 || resp.StatusCode == 404
		}
		l.led.read(ok, time.Since(start))
		sleepCtx(ctx, l.pace)
	}
}

// write sends one PUT or DELETE and records what came back.
func write(c *http.Client, base, key, op, value string) attempt {
	a := attempt{Key: key, Op: op, Value: value, Start: time.Now()}
	var req *http.Request
	var err error
	if op == "put" {
		body, _ := json.Marshal(map[string]string{"key": key, "value": value})
		req, err = http.NewRequest(http.MethodPut, base+"/api", bytes.NewReader(body))
	} else {
		req, err = http.NewRequest(http.MethodDelete, base+"/api?key="+url.QueryEscape(key), nil)
	}
	if err != nil {
		a.Err, a.End = err.Error(), time.Now()
		return a
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		a.Err, a.End = err.Error(), time.Now()
		return a
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	a.End, a.Status = time.Now(), resp.StatusCode
	if err != nil {
		a.Err = err.Error()
		return a
	}
	if resp.StatusCode == http.StatusAccepted {
		var ack struct {
			Op        string    `json:"op"`
			Key       string    `json:"key"`
			OpID      string    `json:"op_id"`
			Timestamp time.Time `json:"timestamp"`
		}
		if err := json.Unmarshal(b, &ack); err != nil || ack.OpID == "" || ack.Key != key || ack.Op != op {
			// A 202 that does not say what it accepted is a broken promise.
			a.Err = fmt.Sprintf("202 with body %q", b)
			a.OpID = ""
			return a
		}
		a.OpID, a.TS = ack.OpID, ack.Timestamp
	}
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
