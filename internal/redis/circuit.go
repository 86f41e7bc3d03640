package redis

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/kvstack/kvstack/internal/kv"
)

// circuit lets the read path skip a Redis known to hang. A Redis that
// hangs (a CLIENT PAUSE, a frozen host) makes every Get and Fill wait for
// its read timeout, retries included (a second and more a read), although
// the read is then served from PostgreSQL anyway. So the first call that
// times out opens the circuit, and from then on Get and Fill
// fail at once, without asking Redis, but for one call every trialEvery,
// let through to try it. A call that Redis answers closes the circuit, and
// so does a Ping that answers: the API's health monitor pings every
// KV_READY_INTERVAL in the background, so reads go back to the cache within
// an interval of Redis's return, tried or not. A Ping that fails opens it
// too, so that a Redis that went away while nothing was read costs no read
// a timeout. While Redis hangs, at most one read a trialEvery waits for it.
//
// A Redis that refuses (stopped, its host up) opens nothing: a refused
// dial fails a read in a millisecond, and every replica finds Redis again
// the moment it is back. An open circuit has a cost: until each replica
// has tried Redis again (a trialEvery, or a ping), one replica may serve a
// key from PostgreSQL while another serves it from the cache, which lags
// PostgreSQL by the consumer's apply; a client reading through both may
// see a write, then not. chaos's redis-stop-10s found that when a refusal
// opened the circuit too (1 history of 10 not linearizable).
//
// What Redis says on its return is safe to serve: a restarted server's
// connections purge the prefix before they serve (checkServer), and the
// consumer repairs, or purges, what it could not apply meanwhile.
//
// Only Get and Fill skip: the consumer's Apply, Purge and CheckMasters
// still ask Redis, since it must know which of its updates failed.
//
// A Redis Cluster has none: one master down fails only its slots' reads,
// and its replica takes over within seconds (reloadOnFailure), where a
// circuit of the whole cluster would send every slot's reads to PostgreSQL.
type circuit struct {
	off  bool
	open atomic.Bool
	// nextTrial is when, in Unix nanoseconds, the next call may try Redis
	// while the circuit is open.
	nextTrial atomic.Int64
}

// trialEvery is how often an open circuit lets one call try Redis.
const trialEvery = time.Second

func newCircuit(cfg Config) *circuit { return &circuit{off: cfg.IsCluster()} }

// errCircuitOpen is what Get and Fill answer while the circuit is open.
var errCircuitOpen = fmt.Errorf("redis: skipped while it does not answer: %w", kv.ErrCacheDown)

// skip reports whether the call must not reach Redis: the circuit is open
// and it is not this call's turn to try.
func (c *circuit) skip() bool {
	if c.off || !c.open.Load() {
		return false
	}
	next, now := c.nextTrial.Load(), time.Now().UnixNano()
	if now < next {
		return true
	}
	return !c.nextTrial.CompareAndSwap(next, now+int64(trialEvery))
}

// observe closes the circuit when Redis answered (a miss is an answer),
// and opens it when err says Redis could not serve a call of a caller that
// was still waiting for it. An entry this package did not write, or the
// caller's own cancellation, says nothing of Redis.
func (c *circuit) observe(ctx context.Context, err error) {
	switch {
	case c.off:
	case err == nil || errors.Is(err, kv.ErrCacheMiss) || goredis.HasErrorPrefix(err, "WRONGTYPE") || errors.Is(err, errCorrupt):
		if c.open.Load() {
			c.open.Store(false)
		}
	case ctx.Err() != nil || !timedOut(err):
		// A refusal (a stopped Redis) costs a read a millisecond, not a
		// timeout: reads go on asking, and find Redis the moment it is
		// back, all replicas alike.
	default:
		if !c.open.Load() {
			c.nextTrial.Store(time.Now().Add(trialEvery).UnixNano())
			c.open.Store(true)
		}
	}
}

// timedOut reports whether Redis failed by not answering in time (a
// read, write or dial timeout), rather than by refusing.
func timedOut(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout() || errors.Is(err, context.DeadlineExceeded)
}

// pinged is observe for a ping.
func (c *circuit) pinged(ctx context.Context, err error) { c.observe(ctx, err) }
