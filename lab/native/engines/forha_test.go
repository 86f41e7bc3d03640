package engines_test

import (
	"net/url"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/kvstack/kvstack/lab/native"
	"github.com/kvstack/kvstack/lab/native/engines"
)

// sameURL tells whether two URLs say the same (their query parameters in
// any order and escaping).
func sameURL(t *testing.T, a, b string) bool {
	t.Helper()
	ua, err1 := url.Parse(a)
	ub, err2 := url.Parse(b)
	if err1 != nil || err2 != nil {
		t.Fatalf("%v, %v", err1, err2)
	}
	qa, qb := ua.Query(), ub.Query()
	ua.RawQuery, ub.RawQuery = "", ""
	return ua.String() == ub.String() && reflect.DeepEqual(qa, qb)
}

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
	owner := s.PostgresRoles().Owner
	if got, want := ha.Postgres.DatabaseURL(owner.User, owner.Password, "kvstack"), s.Get("DATABASE_URL"); !sameURL(t, got, want) {
		t.Errorf("the cluster's URL %s, DATABASE_URL %s", got, want)
	}
	// Locked: TLS alone, every user with a password of the stack's.
	if ha.Postgres.TLS == nil || ha.Postgres.Password == "" || ha.Postgres.ReplicationPassword == "" || ha.Postgres.RewindPassword == "" {
		t.Errorf("patroni's cluster: TLS %v, passwords set: superuser %t, replication %t, rewind %t", ha.Postgres.TLS,
			ha.Postgres.Password != "", ha.Postgres.ReplicationPassword != "", ha.Postgres.RewindPassword != "")
	}
	if ha.Postgres.RestPassword == "" || ha.Postgres.Etcd.TLS == nil {
		t.Errorf("patroni's REST API without a password (%t), or etcd without TLS (%v)", ha.Postgres.RestPassword == "", ha.Postgres.Etcd.TLS)
	}
	if u := ha.Postgres.Nodes[0].RestURL("/health"); !strings.HasPrefix(u, "https://") {
		t.Errorf("patroni's REST API at %s, want https (TLS alone)", u)
	}
	if r := ha.Redis; !r.TLSOnly || r.Password == "" || r.Replication.Name == "" || r.Replication.Password == "" {
		t.Errorf("redis cluster: TLS alone %t, default user's password set %t, replication user %q", r.TLSOnly, r.Password != "", r.Replication.Name)
	}
	for _, n := range ha.RabbitMQ.Nodes {
		if !n.TLSOnly || n.TLS == nil {
			t.Errorf("%s: TLS alone %t", n.Node, n.TLSOnly)
		}
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
