package engines_test

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/kvstack/kvstack/lab/native"
	"github.com/kvstack/kvstack/lab/native/engines"
)

// The HA topology's engines listen on the nodes' ports of its settings,
// are named as its Prometheus targets label them, keep their data under
// the directory given and log into the stack's logs/; the PostgreSQL nodes
// are left to the keeper.
func TestForHA(t *testing.T) {
	s, err := native.Load("../../..", []string{"KV_TOPOLOGY=ha", "KV_STACK_DIR=/st", "KV_HA_RABBITMQ1_PORT=25681",
		"KV_HA_REDIS6_PORT=27005", "KV_HA_POSTGRES2_PORT=25442"})
	if err != nil {
		t.Fatal(err)
	}
	ha := engines.ForHA(s, "/st/engines")
	if n := ha.RabbitMQ.Nodes[0]; n.Port != 25681 || n.Node != "kvstack25681-1@localhost" || n.MetricsPort != 15791 {
		t.Errorf("rabbitmq1 %+v", *n)
	}
	if got := ha.Redis.Addrs(); len(got) != 6 || got[5] != "127.0.0.1:27005" {
		t.Errorf("redis nodes %v", got)
	}
	if got := ha.Postgres.Nodes[1].Port; got != 25442 {
		t.Errorf("postgres2 on %d", got)
	}
	nodes := s.HANodes()
	var want []string
	want = append(want, nodes.Names()...)
	programs := ha.Programs()
	if len(programs) != len(want) {
		t.Fatalf("%d programs, want %d (%v)", len(programs), len(want), want)
	}
	for i, p := range programs {
		if p.Name != want[i] {
			t.Errorf("program %d is %s, want %s", i, p.Name, want[i])
		}
		if wantLog := filepath.Join("/st/logs", p.Name+".log"); p.Log != wantLog {
			t.Errorf("%s logs to %s, want %s", p.Name, p.Log, wantLog)
		}
		if !strings.HasPrefix(p.Dir, "/st/engines/") {
			t.Errorf("%s runs in %s", p.Name, p.Dir)
		}
		keepers := strings.HasPrefix(p.Name, "postgres")
		if p.Manual != keepers || p.NoRestart != keepers {
			t.Errorf("%s: Manual %t, NoRestart %t; only the PostgreSQL nodes are the keeper's", p.Name, p.Manual, p.NoRestart)
		}
	}
}
