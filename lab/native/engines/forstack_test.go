package engines_test

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/kvstack/kvstack/lab/native"
	"github.com/kvstack/kvstack/lab/native/engines"
)

// A stack's own engines listen on its settings' ports, keep their data
// under the directory given and log into the stack's logs/.
func TestForStack(t *testing.T) {
	s, err := native.Load("../../..", []string{"KV_STACK_DIR=/st", "PGPORT=25432", "REDIS_PORT=26379",
		"RABBITMQ_PORT=25673", "RABBITMQ_DIST_PORT=45673", "RABBITMQ_METRICS_PORT=25692"})
	if err != nil {
		t.Fatal(err)
	}
	e := engines.ForStack(s, "/st/engines")
	if e.Postgres.Port != 25432 || e.Redis.Port != 26379 || e.RabbitMQ.Port != 25673 ||
		e.RabbitMQ.DistPort != 45673 || e.RabbitMQ.MetricsPort != 25692 {
		t.Errorf("ports %+v %+v %+v", *e.Postgres, *e.Redis, *e.RabbitMQ)
	}
	if e.RabbitMQ.Node != "kvstack25673@localhost" {
		t.Errorf("node %s", e.RabbitMQ.Node)
	}
	for _, x := range e.All() {
		p := x.Program()
		if want := filepath.Join("/st/logs", p.Name+".log"); p.Log != want {
			t.Errorf("%s logs to %s, want %s", p.Name, p.Log, want)
		}
		if !strings.HasPrefix(p.Dir, "/st/engines/") {
			t.Errorf("%s runs in %s", p.Name, p.Dir)
		}
	}
	conf := e.RabbitMQ.Config()
	for _, want := range []string{"listeners.tcp.default = 127.0.0.1:25673", "prometheus.tcp.port = 25692"} {
		if !strings.Contains(conf, want) {
			t.Errorf("rabbitmq.conf lacks %q:\n%s", want, conf)
		}
	}
	if strings.Contains(conf, "cluster_formation") {
		t.Error("a single node with a cluster_formation setting")
	}
	e.RabbitMQ.Peers = []string{"b@localhost", "c@localhost"}
	if conf := e.RabbitMQ.Config(); !strings.Contains(conf, "classic_config.nodes.3 = c@localhost") {
		t.Errorf("a three-node cluster's config:\n%s", conf)
	}
}
