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
	"sync"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"
)

// Ready is told the addresses a process listens on once it serves: its
// data (or health) port and its admin port.
type Ready func(data, admin net.Addr)

// adminHandler serves /metrics, /debug/pprof/ and /debug/vars, on a
// listener of their own (KV_ADMIN_ADDR): a profile or the process's
// command line is nobody's business who can reach the data port, and
// nginx routes only that one.
//
// /metrics speaks OpenMetrics when asked, so that the latency histograms'
// exemplars (trace ids) reach Prometheus.
func adminHandler(reg *prometheus.Registry) http.Handler {
	admin := chi.NewRouter()
	admin.Method(http.MethodGet, "/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{EnableOpenMetrics: true, Registry: reg}))
	admin.Mount("/debug", middleware.Profiler())
	return admin
}

// adminServer is a process's admin listener, serving until closed.
type adminServer struct {
	srv  *http.Server
	ln   net.Listener
	done chan error
}

// listenAdmin starts serving adminHandler(reg) on addr.
func listenAdmin(addr string, reg *prometheus.Registry, log zerolog.Logger) (*adminServer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen %s (KV_ADMIN_ADDR): %w", addr, err)
	}
	a := &adminServer{
		srv: &http.Server{Handler: adminHandler(reg), ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 16 << 10},
		ln:  ln, done: make(chan error, 1),
	}
	log.Info().Str("admin_addr", ln.Addr().String()).Msg("admin listening: /metrics, /debug/pprof, /debug/vars")
	go func() { a.done <- a.srv.Serve(ln) }()
	return a, nil
}

// ready tells ready, if any, the data address and the admin one.
func (a *adminServer) ready(ready Ready) func(net.Addr) {
	return func(data net.Addr) {
		if ready != nil {
			ready(data, a.ln.Addr())
		}
	}
}

// close stops the admin listener, last of all (Prometheus scrapes a
// draining process), cutting a profile still being taken.
func (a *adminServer) close() {
	_ = a.srv.Close()
	<-a.done
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
// refused, and those that never sent a request once a second old) and
// lets the requests in flight finish, by stop.timeout from
// the start of it all. Past it the connections left are cut, and serve
// fails.
func serve(ctx context.Context, addr string, h http.Handler, stop stopping, ready func(net.Addr), log zerolog.Logger) error {
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
	unused := unusedConns{since: map[net.Conn]time.Time{}}
	srv.ConnState = unused.track
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
	go unused.closeWhileShuttingDown(sctx)
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

// unusedConns are a server's connections that have not sent a request
// yet (http.StateNew), with when each was opened. net/http's Shutdown
// waits for such a connection until it is 5 s old, as if a request were
// on its way; an HTTP client's spare dial, parked unused in its pool,
// would so hold a stop for up to 5 s, as long as KV_SHUTDOWN_TIMEOUT.
type unusedConns struct {
	mu    sync.Mutex
	since map[net.Conn]time.Time
}

// unusedConnGrace is how long a connection may stay without a request
// once the server is shutting down: a client that means to use the
// connection it opened sends its request within milliseconds.
const unusedConnGrace = time.Second

// track is the server's ConnState hook.
func (u *unusedConns) track(c net.Conn, state http.ConnState) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if state == http.StateNew {
		u.since[c] = time.Now()
		return
	}
	delete(u.since, c)
}

// closeWhileShuttingDown closes, until ctx ends (the shutdown is over),
// each connection that has gone unusedConnGrace without a request.
func (u *unusedConns) closeWhileShuttingDown(ctx context.Context) {
	tick := time.NewTicker(unusedConnGrace / 10)
	defer tick.Stop()
	for {
		u.closeOpenedBefore(time.Now().Add(-unusedConnGrace))
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// closeOpenedBefore closes the connections opened before t that have sent
// nothing since.
func (u *unusedConns) closeOpenedBefore(t time.Time) {
	u.mu.Lock()
	defer u.mu.Unlock()
	for c, opened := range u.since {
		if opened.Before(t) {
			_ = c.Close()
			delete(u.since, c)
		}
	}
}
