package rabbitmq_test

import (
	"fmt"
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/kvstack/kvstack/deploy/native/engine/enginetest"
)

// privateBroker is the node TestDisruptiveBrokerRestart stops: this
// package's own, started on first use.
var privateBroker enginetest.RabbitMQ

func TestMain(m *testing.M) {
	code := m.Run()
	privateBroker.Close() // before the leak check: its supervisord is a child
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}
