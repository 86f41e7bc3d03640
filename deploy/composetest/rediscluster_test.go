package composetest

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/kvstack/kvstack/internal/engine"
	"github.com/kvstack/kvstack/internal/syncbuf"
	"github.com/kvstack/kvstack/internal/tlsconf"
)

// docker-compose.ha.yml's Redis Cluster, booted: six redis-servers with the
// nodes' configuration file and command, the files engine-files.sh copies
// for them (the certificate `make compose-secrets` makes, the rendered
// ACL file and replication user), on private ports of 127.0.0.1; the
// cluster formed by redis-cli as the one-shot runs it (its TLS options and
// user, its password from its environment). Then: every replica streams
// from its master, the app's user runs the cache's commands through a
// cluster client that dials the names the nodes announce, and nothing
// answers in plain text or as the default user.
func checkHARedisCluster(t *testing.T, tr tree) []string {
	p := tr.project(t)
	g := makeGenerated(t, tr.composeFile())
	names := nodes(p, "redis")
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	ports, err := engine.FreePorts(3 * len(names))
	if err != nil {
		t.Fatal(err)
	}
	tlsPorts := map[string]string{}
	plainPorts := map[string]string{}
	var caFile string
	logs := map[string]*syncbuf.Buffer{} // each node's output, read while it runs
	for i, name := range names {
		s := service(t, p, name)
		run := engineFiles(t, g, s)
		caFile = filepath.Join(run, "ca.pem")
		if len(s.Command) < 2 || s.Command[0] != "redis-server" {
			t.Fatalf("%s: command %v, want redis-server and its config file", name, s.Command)
		}
		confRel, ok := strings.CutPrefix(s.Command[1], repoInContainers+"/")
		if !ok {
			t.Fatalf("%s: config %s is not the repository's", name, s.Command[1])
		}
		conf := strings.ReplaceAll(string(tr.read(t, confRel)), "/run/kvstack/", run+"/")
		conf = strings.ReplaceAll(conf, "/data/", run+"/")
		conf = regexp.MustCompile(`(?m)^dir .*$`).ReplaceAllString(conf, "dir "+run)
		tlsPort := regexp.MustCompile(`(?m)^tls-port (\d+)$`)
		if m := tlsPort.FindStringSubmatch(conf); m == nil || m[1] != "6379" {
			bad("%s: no tls-port 6379, the port REDIS_ADDR names", name)
		}
		tlsPorts[name] = strconv.Itoa(ports[3*i])
		conf = tlsPort.ReplaceAllString(conf, "tls-port "+tlsPorts[name])
		plain := regexp.MustCompile(`(?m)^port (\d+)$`)
		if m := plain.FindStringSubmatch(conf); m == nil || m[1] != "0" {
			bad("%s: Redis answers in plain text (want port 0)", name)
			plainPorts[name] = strconv.Itoa(ports[3*i+1])
			conf = plain.ReplaceAllString(conf, "port "+plainPorts[name])
		}
		// The bus's port, which would be tls-port + 10000.
		conf += "cluster-port " + strconv.Itoa(ports[3*i+2]) + "\nbind 127.0.0.1\n"
		confFile := filepath.Join(run, "redis.conf")
		if err := os.WriteFile(confFile, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("redis-server", append([]string{confFile}, s.Command[2:]...)...)
		out := &syncbuf.Buffer{}
		logs[name] = out
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatalf("redis-server: %v (make setup installs it)", err)
		}
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			if t.Failed() {
				t.Logf("%s's redis-server said:\n%s", name, out.String())
			}
		})
	}
	// The cluster client dials the names the nodes announce, here on
	// loopback, and verifies each against the CA for that name (a custom
	// Dialer replaces go-redis's TLS dial).
	dialer := func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, port, _ := net.SplitHostPort(addr)
		conn, err := (&net.Dialer{Timeout: 2 * time.Second}).DialContext(ctx, network, net.JoinHostPort("127.0.0.1", port))
		if err != nil {
			return nil, err
		}
		cfg, err := tlsconf.Client(caFile, host)
		if err != nil {
			conn.Close()
			return nil, err
		}
		tc := tls.Client(conn, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			conn.Close()
			return nil, err
		}
		return tc, nil
	}
	client := func(name, user, password string) *goredis.Client {
		cfg, err := tlsconf.Client(caFile, name)
		if err != nil {
			t.Fatal(err)
		}
		c := goredis.NewClient(&goredis.Options{Addr: "127.0.0.1:" + tlsPorts[name], TLSConfig: cfg, Username: user, Password: password,
			DialTimeout: 2 * time.Second, MaxRetries: -1, Protocol: 2})
		t.Cleanup(func() { c.Close() })
		return c
	}
	ctx := context.Background()
	exporter := service(t, p, "redis-exporter1")
	monUser, monPass := env(exporter, "REDIS_USER"), env(exporter, "REDIS_PASSWORD")
	for _, name := range names {
		deadline := time.Now().Add(15 * time.Second)
		for {
			err := client(name, monUser, monPass).Ping(ctx).Err()
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				return append(problems, fmt.Sprintf("%s: the exporter's user cannot PING over TLS: %v", name, err))
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	// The one-shot's redis-cli, its options and user, on these nodes.
	create := service(t, p, "redis-cluster")
	script := string(tr.read(t, bindSource(t, create, create.Entrypoint[len(create.Entrypoint)-1])))
	m := regexp.MustCompile(`(?m)^cli="redis-cli ([^"]*)"$`).FindStringSubmatch(script)
	if m == nil {
		return append(problems, `redis-cluster: no cli="redis-cli …" line in its script`)
	}
	args := strings.Fields(strings.ReplaceAll(m[1], "/run/kvstack/ca.pem", caFile))
	args = append(args, "--cluster", "create")
	for _, name := range names {
		args = append(args, "127.0.0.1:"+tlsPorts[name])
	}
	args = append(args, "--cluster-replicas", "1", "--cluster-yes")
	cli := exec.Command("redis-cli", args...)
	cli.Env = []string{"PATH=" + os.Getenv("PATH"), "REDISCLI_AUTH=" + env(create, "REDISCLI_AUTH")}
	if out, err := cli.CombinedOutput(); err != nil {
		return append(problems, fmt.Sprintf("redis-cluster's redis-cli --cluster create: %v\n%s", err, out))
	}
	// Every replica streams from its master (as kvstack_replica, over TLS).
	deadline := time.Now().Add(40 * time.Second)
	for _, name := range names {
		for {
			info, err := client(name, monUser, monPass).Info(ctx, "replication").Result()
			if err == nil && (strings.Contains(info, "role:master") || strings.Contains(info, "master_link_status:up")) {
				break
			}
			// Refused by its master, it never will: its user and password
			// are read at start, and the master's ACL file before it listens.
			if refusal := masterRefusal.FindString(logs[name].String()); refusal != "" {
				bad("%s: a replica that does not stream from its master: its master refuses it: %s", name, refusal)
				break
			}
			if time.Now().After(deadline) {
				bad("%s: a replica that does not stream from its master: %v\n%s", name, err, info)
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	api := service(t, p, "api1")
	var seeds []string
	for _, name := range names {
		seeds = append(seeds, name+":"+tlsPorts[name])
	}
	app := goredis.NewClusterClient(&goredis.ClusterOptions{Addrs: seeds, Dialer: dialer,
		Username: env(api, "REDIS_USERNAME"), Password: env(api, "REDIS_PASSWORD"), Protocol: 2, MaxRetries: 5})
	defer app.Close()
	expect := func(what string, err error, allowed bool) {
		switch {
		case allowed && err != nil:
			bad("%s: refused: %v", what, err)
		case !allowed && err == nil:
			bad("%s: allowed", what)
		}
	}
	for i := range 20 {
		key := "kv:probe" + strconv.Itoa(i) // on every master
		expect("the app's user: HSET on the cache's keys, through the cluster", app.HSet(ctx, key, "v", "1").Err(), true)
	}
	expect("the app's user: SET outside the cache's keys", app.Set(ctx, "other", "1", 0).Err(), false)
	expect("the app's user: FLUSHALL", client(names[0], env(api, "REDIS_USERNAME"), env(api, "REDIS_PASSWORD")).FlushAll(ctx).Err(), false)
	expect("the app's user: CLUSTER FORGET", client(names[0], env(api, "REDIS_USERNAME"), env(api, "REDIS_PASSWORD")).ClusterForget(ctx, "x").Err(), false)
	expect("the exporter's user: CLUSTER INFO", client(names[0], monUser, monPass).ClusterInfo(ctx).Err(), true)
	expect("the default user with an empty password: PING", client(names[0], "default", "").Ping(ctx).Err(), false)
	for name, port := range plainPorts {
		c := goredis.NewClient(&goredis.Options{Addr: "127.0.0.1:" + port, Username: env(api, "REDIS_USERNAME"), Password: env(api, "REDIS_PASSWORD"), MaxRetries: -1, Protocol: 2})
		expect(name+": plain text: PING without TLS", c.Ping(ctx).Err(), false)
		c.Close()
	}
	return problems
}

// masterRefusal is a replica's log line for a master that refuses its
// replication for want of a user or a password (NOAUTH, NOPERM,
// WRONGPASS in the reply to its AUTH, PING or PSYNC).
var masterRefusal = regexp.MustCompile(`(?m)^.*(from master|to PSYNC|AUTH to MASTER).*(NOAUTH|NOPERM|WRONGPASS).*$`)

// authRefusal is a Redis server's answer to a user or password it does
// not know, or to a user without the right.
var authRefusal = regexp.MustCompile(`^(WRONGPASS|NOPERM|NOAUTH)`)

var haRedisChecks = map[string]check{"redis cluster boots": checkHARedisCluster}

func TestHARedisCluster(t *testing.T) {
	t.Parallel()
	for _, p := range checkHARedisCluster(t, haTree) {
		t.Error(p)
	}
}

func TestHARedisClusterCatches(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, file, old, new, want string }{
		{"no replication user", "deploy/compose-ha/redis-cluster.conf",
			"include /run/kvstack/redis-replication.conf\n", "", "a replica that does not stream"},
		{"plain text", "deploy/compose-ha/redis-cluster.conf", "port 0\n", "port 6380\n", "plain text"},
		{"the one-shot as the app", haFile,
			"REDISCLI_AUTH: ${REDIS_CLUSTER_PASSWORD:?set REDIS_CLUSTER_PASSWORD (make compose-secrets)}", "REDISCLI_AUTH: ${REDIS_APP_PASSWORD:?set REDIS_APP_PASSWORD (make compose-secrets)}", "redis-cli --cluster create"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			catches(t, haRedisChecks["redis cluster boots"], haFile, tt.file, tt.old, tt.new, tt.want)
		})
	}
}

// masterRefusal matches the lines redis-server 7 logs for each refusal
// (replication.c's "Unable to AUTH to MASTER", "Error reply to PING from
// master", "Unexpected reply to PSYNC from master"), and not a refusal of
// something else.
func TestMasterRefusalLines(t *testing.T) {
	for line, want := range map[string]bool{
		"12:S 07 Dec 2026 10:00:00.000 # Unable to AUTH to MASTER: -WRONGPASS invalid username-password pair or user is disabled.": true,
		"12:S 07 Dec 2026 10:00:00.000 # Error reply to PING from master: '-NOAUTH Authentication required.'":                      true,
		"12:S 07 Dec 2026 10:00:00.000 # Unexpected reply to PSYNC from master: -NOPERM User replica has no permissions":           true,
		"12:S 07 Dec 2026 10:00:00.000 * MASTER <-> REPLICA sync started":                                                          false,
		"12:M 07 Dec 2026 10:00:00.000 # client refused: -WRONGPASS":                                                               false,
	} {
		if got := masterRefusal.MatchString(line); got != want {
			t.Errorf("masterRefusal matches %q: %v, want %v", line, got, want)
		}
	}
}
