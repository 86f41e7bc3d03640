package engines

import (
	"strings"
	"testing"

	"github.com/kvstack/kvstack/internal/rabbitmq/rabbittest"
)

// The HA topology's RABBITMQ_URL lists a node each: DialAMQP takes the
// first that answers, as the binaries do. make restore on HA dialled the
// whole list as one URL and failed its queue purge ("vhost
// ,amqp://…:32122/,… not found").
func TestDialAMQPList(t *testing.T) {
	if testing.Short() {
		t.Skip("needs RabbitMQ; not run with -short (make test runs it)")
	}
	url := rabbittest.URL()
	for _, list := range []string{url, "amqp://guest:guest@127.0.0.1:1/," + url, url + ",amqp://guest:guest@127.0.0.1:1/"} {
		conn, err := DialAMQP(list, "")
		if err != nil {
			t.Fatalf("DialAMQP(%s): %v (is the machine's RabbitMQ up? make setup)", list, err)
		}
		conn.Close()
	}
	_, err := DialAMQP("amqp://kv:secret@127.0.0.1:1/,amqp://kv:secret@127.0.0.1:2/", "")
	if err == nil || strings.Contains(err.Error(), "secret") || !strings.Contains(err.Error(), "127.0.0.1:2") {
		t.Errorf("no node answers: %v; want every node named, no password", err)
	}
}
