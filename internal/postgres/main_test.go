package postgres_test

import (
	"fmt"
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/kvstack/kvstack/internal/engine/enginetest"
)

// privatePair is the primary and standby TestDisruptivePrimaryFailover
// fails over: this package's own, started on first use.
var privatePair enginetest.Patroni

// The pools start health-check and connection goroutines; every test must
// close what it opens.
func TestMain(m *testing.M) {
	code := m.Run()
	privatePair.Close() // before the leak check: its supervisord is a child
	privateTLS.Close()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}
