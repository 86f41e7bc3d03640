package rabbitmq_test

import (
	"fmt"
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/kvstack/kvstack/internal/engine/enginetest"
)

// privateBroker is the node TestDisruptiveBrokerRestart stops, and
// cluster the three nodes the cluster tests kill and stop: this package's
// own, each started on first use.
var (
	privateBroker = enginetest.RabbitMQ{TLS: true} // TestTLS uses its TLS listener
	cluster       enginetest.RabbitMQCluster
)

func TestMain(m *testing.M) {
	code := m.Run()
	privateBroker.Close() // before the leak check: their supervisords are children
	cluster.Close()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}
