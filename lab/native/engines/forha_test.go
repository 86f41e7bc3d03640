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
// the directory given and log into the stack's logs/; a PostgreSQL node's
// program is its Patroni, beside an etcd; supervisord restarts every one.
func TestForHA(t *testing.T) {
	s, err := native.Load("../../..", []string{"KV_TOPOLOGY=ha", "KV_STACK_DIR=/st", "KV_HA_RABBITMQ1_PORT=25681",
		"KV_HA_REDIS6_PORT=27005", "KV_HA_POSTGRES2_PORT=25442", "KV_HA_PATRONI2_PORT=25443", "KV_HA_ETCD_PORT=25444"})
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
	if n := ha.Postgres.Nodes[1]; n.Port != 25442 || n.RestPort != 25443 {
		t.Errorf("postgres2 on %d, its Patroni on %d", n.Port, n.RestPort)
	}
	if got := ha.Postgres.Etcd.Addr(); got != "127.0.0.1:25444" {
		t.Errorf("etcd on %s", got)
	}
	if got := ha.Postgres.DatabaseURL("kvstack", "kvstack", "kvstack"); got != s.Get("DATABASE_URL") {
		t.Errorf("the cluster's URL %s, DATABASE_URL %s", got, s.Get("DATABASE_URL"))
	}
	// Both nodes archive into the stack's repository, under the cluster's
	// own stanza (the single node's is kvstack).
	if a := ha.Postgres.Archive; a == nil || a.RepoPath() != "/st/engines/pgbackrest/repo" || a.Stanza != "kvstack-ha" {
		t.Errorf("the cluster's archive %+v, want stanza kvstack-ha in /st/engines/pgbackrest/repo", a)
	}
	nodes := s.HANodes()
	var want []string
	want = append(want, nodes.Names()...)
	want = append(want, "etcd")
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
		if p.Manual || p.NoRestart {
			t.Errorf("%s: Manual %t, NoRestart %t; Up starts every node and supervisord restarts it", p.Name, p.Manual, p.NoRestart)
		}
		if strings.HasPrefix(p.Name, "postgres") && p.Command[0] != "patroni" {
			t.Errorf("%s runs %v, not Patroni", p.Name, p.Command)
		}
	}
}
