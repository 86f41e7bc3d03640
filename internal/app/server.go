// Package app assembles kvstack's processes from their parts: RunAPI and
// RunConsumer read like a table of contents (telemetry, dependencies,
// servers, shutdown), and can listen on port 0 so that a test can boot a
// whole process in-house.
package app

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"
)

// Ready is told the address a process listens on once it serves.
type Ready func(addr net.Addr)

// withAdmin serves /metrics and /debug/pprof/ beside h. They are for
// Prometheus and operators on the host; nginx does not route them. Every
// other request goes to h untouched, whatever its method: a router in front
// would answer a made-up method itself (chi: an empty 405), so that it never
// reached the API's middleware to be measured as method "other". No
// http.ServeMux either: it stamps its pattern on the request, for nothing.
//
// /metrics speaks OpenMetrics when asked, so that the latency histograms'
// exemplars (trace ids) reach Prometheus.
func withAdmin(h http.Handler, reg *prometheus.Registry) http.Handler {
	admin := chi.NewRouter()
	admin.Method(http.MethodGet, "/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{EnableOpenMetrics: true, Registry: reg}))
	admin.Mount("/debug", middleware.Profiler())
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p := r.URL.Path; p == "/metrics" || p == "/debug" || strings.HasPrefix(p, "/debug/") {
			admin.ServeHTTP(w, r)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// stopping is how a server stops once its context is done.
type stopping struct {
	// timeout bounds the whole stop: from the context's end until the
	// server has stopped (KV_SHUTDOWN_TIMEOUT).
	timeout time.Duration
	// delay is how long the server goes on serving, not ready, so that
	// the edge stops sending it requests first (KV_DRAIN_DELAY).
	delay time.Duration
	// drain, called at once, turns readiness false; closing, called once
	// the delay has passed and before the server stops taking
	// connections, ends what would hold the stop (the waits). Either may
	// be nil.
	drain, closing func()
}

// serve listens on addr and serves h until ctx is done, then stops
// gracefully, in this order: readiness turns false (stop.drain); the
// server goes on serving for stop.delay; stop.closing ends the waits; the
// server stops taking connections (idle keep-alive ones closed: nginx
// sends a request that finds one closed to the other replica, as one
// refused) and lets the requests in flight finish, by stop.timeout from
// the start of it all. Past it the connections left are cut, and serve
// fails.
func serve(ctx context.Context, addr string, h http.Handler, stop stopping, ready Ready, log zerolog.Logger) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", addr, err)
	}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		// No WriteTimeout: GET /api/all streams for as long as the store is
		// large; nginx bounds idle upstream reads.
		IdleTimeout:    2 * time.Minute,
		MaxHeaderBytes: 16 << 10,
	}
	log.Info().Str("addr", ln.Addr().String()).Msg("listening")
	if ready != nil {
		ready(ln.Addr())
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()

	select {
	case err := <-errc:
		return fmt.Errorf("serve %s: %w", addr, err)
	case <-ctx.Done():
	}
	deadline := time.Now().Add(stop.timeout)
	if stop.drain != nil {
		stop.drain()
	}
	log.Info().Dur("drain_delay", stop.delay).Dur("shutdown_timeout", stop.timeout).Msg("stopping: not ready, serving on for the drain delay")
	delay := time.NewTimer(stop.delay)
	defer delay.Stop()
	select {
	case err := <-errc:
		return fmt.Errorf("serve %s: %w", addr, err)
	case <-delay.C:
	}
	if stop.closing != nil {
		stop.closing()
	}
	sctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		_ = srv.Close()
		return fmt.Errorf("shutdown %s: requests still in flight after %s, cut: %w", addr, stop.timeout, err)
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	log.Info().Msg("server stopped: every request answered")
	return nil
}
