package httpapi

import (
	"math"
	"net/http"
	"strconv"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/time/rate"
)

// clientLimits holds a token bucket per client (a token's subject) in one
// replica: KV_RATE_LIMIT requests a second with a burst of KV_RATE_BURST.
// It holds at most KV_RATE_CLIENTS buckets; past that the one used least
// recently is dropped, and its client, when it comes back, starts with a
// full burst: memory stays bounded whatever the number of subjects.
type clientLimits struct {
	limit   rate.Limit
	burst   int
	buckets *lru.Cache[string, *rate.Limiter]
}

// newClientLimits returns nil (no limit) when cfg sets no rate.
func newClientLimits(cfg Config) *clientLimits {
	if cfg.RateLimit <= 0 {
		return nil
	}
	buckets, err := lru.New[string, *rate.Limiter](max(1, cfg.RateClients))
	if err != nil {
		panic(err) // only for a size below 1
	}
	return &clientLimits{limit: rate.Limit(cfg.RateLimit), burst: max(1, cfg.RateBurst), buckets: buckets}
}

// admit takes one request of client from its bucket, or returns how long
// until the bucket holds one (taking nothing).
func (c *clientLimits) admit(client string, now time.Time) (wait time.Duration, ok bool) {
	b, found := c.buckets.Get(client)
	if !found {
		fresh := rate.NewLimiter(c.limit, c.burst)
		if prev, raced, _ := c.buckets.PeekOrAdd(client, fresh); raced {
			b = prev
		} else {
			b = fresh
		}
	}
	res := b.ReserveN(now, 1)
	if d := res.DelayFrom(now); d > 0 {
		res.CancelAt(now)
		return d, false
	}
	return 0, true
}

// limitClient refuses a request over its client's rate with 429
// rate_limited and a Retry-After of the seconds until its bucket has room
// (nginx's code for its per-address limit). It runs after authenticate:
// a request that names no client (KV_AUTH=off) is not limited here.
func (a *api) limitClient(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		client := principal(r).Subject
		if a.limits == nil || client == "" {
			next.ServeHTTP(w, r)
			return
		}
		wait, ok := a.limits.admit(client, time.Now())
		if !ok {
			a.metrics.RateLimited()
			w.Header().Set("Retry-After", strconv.Itoa(max(1, int(math.Ceil(wait.Seconds())))))
			writeError(w, r, http.StatusTooManyRequests, "rate_limited", "this client sends more requests than KV_RATE_LIMIT allows; retry after Retry-After seconds")
			return
		}
		next.ServeHTTP(w, r)
	})
}
