package app

import (
	"context"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// A connection that was opened and never sent a request (an HTTP client's
// spare dial, parked in its idle pool) does not hold the stop: net/http's
// Shutdown waits up to 5 s for such a connection, longer than the stop may
// take, so serve closes it once the drain is over.
func TestStopIsNotHeldByAConnectionThatSentNothing(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	addr := make(chan net.Addr, 1)
	stop := stopping{timeout: 2 * time.Second, delay: 100 * time.Millisecond}
	done := make(chan error, 1)
	ok := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {})
	go func() {
		done <- serve(ctx, "127.0.0.1:0", ok, stop, func(a net.Addr) { addr <- a }, zerolog.Nop())
	}()
	conn, err := net.Dial("tcp", (<-addr).String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	time.Sleep(50 * time.Millisecond) // accepted by the server: StateNew

	began := time.Now()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("serve: %v", err)
		}
		t.Logf("stopped in %s", time.Since(began))
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not return")
	}
}
