package engine

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"go.yaml.in/yaml/v3"

	"github.com/kvstack/kvstack/internal/supervisor"
)

// Etcd is a private single-member etcd (its v3 API on 127.0.0.1:Port, its
// peer listener on PeerPort), data in Dir/data: the DCS a Patroni cluster
// keeps its leader key in. One member has no quorum of its own to lose;
// it stands for the three or five a production DCS runs.
type Etcd struct {
	Name           string // the program's name (default "etcd")
	Port, PeerPort int
	Dir            string
	Log            string // its output (default Dir/NAME.log)
	// TLS, when set, is served on Port alone (https), and every client
	// must present a certificate TLS.CA signed (--client-cert-auth):
	// Patroni presents its cluster's (Patroni.TLS), which must chain to
	// the same CA; the health check presents etcd's own. The peer
	// listener (PeerPort) then serves TLS alone too, and asks its peers
	// for a certificate of the same CA (--peer-client-cert-auth).
	TLS *TLS
}

func (e *Etcd) name() string {
	if e.Name == "" {
		return "etcd"
	}
	return e.Name
}

// Addr is its client address, host:port.
func (e *Etcd) Addr() string { return addr(e.Port) }

// PeerAddr is its peer listener's address, host:port.
func (e *Etcd) PeerAddr() string { return addr(e.PeerPort) }

// Init creates Dir, owned by the etcd user of Debian's etcd-server, and
// gives that user its TLS key.
func (e *Etcd) Init(context.Context) error {
	acct, err := systemUser("etcd")
	if err != nil {
		return err
	}
	if err := acct.mkdirs(e.Dir); err != nil {
		return err
	}
	return e.TLS.own(acct)
}

// Program runs etcd in the foreground, first of its cluster (priority 1).
func (e *Etcd) Program() supervisor.Program {
	acct, _ := systemUser("etcd")
	client, peer := e.TLS.scheme()+"://"+e.Addr(), e.TLS.scheme()+"://"+e.PeerAddr()
	command := []string{"etcd", "--name", e.name(), "--data-dir", filepath.Join(e.Dir, "data"),
		"--listen-client-urls", client, "--advertise-client-urls", client,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
		"--initial-cluster", e.name() + "=" + peer, "--initial-cluster-state", "new",
		"--initial-cluster-token", e.name() + "-" + strconv.Itoa(e.Port)}
	if e.TLS != nil {
		command = append(command, "--cert-file", e.TLS.Cert, "--key-file", e.TLS.Key,
			"--client-cert-auth", "--trusted-ca-file", e.TLS.CA,
			"--peer-cert-file", e.TLS.Cert, "--peer-key-file", e.TLS.Key,
			"--peer-client-cert-auth", "--peer-trusted-ca-file", e.TLS.CA)
	}
	return supervisor.Program{
		Name: e.name(), Command: command, Dir: e.Dir, User: acct.name, Priority: 1,
		Health: etcdProbe{e}, Addr: e.Addr(), Log: logFile(e.Log, e.Dir, e.name()),
	}
}

// ClientConfig is what a client of a TLS etcd speaks: TLS trusting
// TLS.CA, presenting etcd's own certificate (the CA signed it); nil
// without TLS.
func (e *Etcd) ClientConfig() (*tls.Config, error) {
	if e.TLS == nil {
		return nil, nil
	}
	cfg, err := e.TLS.ClientConfig()
	if err != nil {
		return nil, err
	}
	cert, err := tls.LoadX509KeyPair(e.TLS.Cert, e.TLS.Key)
	if err != nil {
		return nil, err
	}
	cfg.Certificates = []tls.Certificate{cert}
	return cfg, nil
}

// etcdProbe is GET /health, over TLS with a client certificate when etcd
// serves TLS (the files read at each check: the stack makes them after
// it lists its programs).
type etcdProbe struct{ e *Etcd }

func (p etcdProbe) Check(ctx context.Context) error {
	cfg, err := p.e.ClientConfig()
	if err != nil {
		return err
	}
	return supervisor.HTTPProbe{Addr: p.e.Addr(), Path: "/health", TLS: cfg}.Check(ctx)
}

func (p etcdProbe) String() string { return p.e.TLS.scheme() + "://" + p.e.Addr() + "/health" }

// etcd3 is Patroni's etcd3 section: etcd's address, and with etcd's TLS,
// https, its CA and the cluster's certificate as the client's.
func (pc *Patroni) etcd3() (map[string]any, error) {
	c := map[string]any{"hosts": pc.Etcd.Addr()}
	if t := pc.Etcd.TLS; t != nil {
		if pc.TLS == nil {
			return nil, fmt.Errorf("patroni %s: etcd serves TLS and asks for a client certificate, and the cluster has none (TLS)", pc.Scope)
		}
		c["protocol"], c["cacert"], c["cert"], c["key"] = "https", t.CA, pc.TLS.Cert, pc.TLS.Key
	}
	return c, nil
}

// Patroni is a PostgreSQL cluster kept by Patroni (Debian's patroni, 3.0):
// its nodes elect a leader through Etcd, the others stream from it, one of
// them synchronously (synchronous_mode, non-strict: while no standby
// streams, commits do not wait for one, and Patroni promotes only the
// standby it named synchronous). Patroni starts, restarts, promotes and
// rewinds PostgreSQL; the supervisor only restarts Patroni. Clients find
// the primary through DatabaseURL.
type Patroni struct {
	// Scope is the cluster's name in the DCS.
	Scope string
	Etcd  *Etcd
	Nodes []*PatroniNode
	// Bootstrap is SQL the first primary runs once, just after initdb
	// (Patroni's post_bootstrap), as superuser: roles, databases, grants.
	// Each entry is one statement (CREATE DATABASE cannot share a
	// transaction).
	Bootstrap []string
	// Parameters are PostgreSQL settings added to the cluster's (in the
	// DCS, bootstrap.dcs.postgresql.parameters: every node's), say
	// archive_mode and archive_command for WAL archiving; they override
	// the defaults of the same name.
	Parameters map[string]any
	// TTL is the leader key's lifetime in seconds (default 10): a lost
	// primary's standby is promoted once it expires. LoopWait (default 1)
	// and RetryTimeout (default 3) are Patroni's loop_wait and
	// retry_timeout; loop_wait + 2 × retry_timeout must not pass ttl.
	TTL, LoopWait, RetryTimeout int
	// Archive, when set, archives every node's WAL into a pgBackRest
	// repository and backs the cluster up from its primary: point-in-time
	// recovery (Restore).
	Archive *PgBackRest
	// TLS, when set, is served by every node (ssl=on), and Patroni's own
	// sessions (its superuser's, replication's, pg_rewind's) verify it
	// (verify-full): the certificate must name 127.0.0.1 and localhost,
	// the addresses Patroni connects to.
	TLS *TLS
	// Password, when set, locks the cluster as Postgres.Password locks a
	// single server: it is the superuser postgres's (initdb's), every TCP
	// session proves a password (scram-sha-256; hostssl alone with TLS),
	// and only the postgres OS user comes in unchecked, by peer over the
	// unix socket (pgBackRest). ReplicationPassword is then the
	// replication user's (replicator: the standbys' streaming and their
	// copy), RewindPassword pg_rewind's user's (rewinder, no superuser:
	// Patroni grants it the functions pg_rewind calls).
	Password, ReplicationPassword, RewindPassword string
	// RestPassword, when set, is asked (HTTP basic auth, user RestUser) by
	// every node's REST API of a request that changes something: POST,
	// PUT, PATCH and DELETE (a switchover, a failover, a restart, a
	// reinitialisation, the DCS configuration) answer 401 without it.
	// Patroni's own requests to the other nodes and patronictl send it
	// (both read restapi.authentication); the GETs (/health, /primary,
	// /cluster, /metrics) stay open to anyone who reaches the port.
	// With TLS, the REST API serves TLS alone with the cluster's
	// certificate (restapi.certfile), and its unsafe endpoints also ask
	// for a client certificate of TLS.CA (verify_client: optional, 403
	// without one): Patroni's requests between nodes and patronictl
	// present the node's certificate and verify the other's against the
	// CA; this package's clients (Members, Primary, the health check)
	// verify it against TLS.CA.
	RestPassword string

	// recoverTo, while Restore runs, is its target: the nodes'
	// configurations bootstrap the cluster from the Archive.
	recoverTo time.Time
}

// PatroniNode is one node of a Patroni cluster: Patroni's process (its
// REST API on RestPort: /primary, /health, /cluster, /metrics) and the
// PostgreSQL it runs on Port, data in Dir/data.
type PatroniNode struct {
	Name     string // the program's, Patroni's member and the standby's application_name
	Port     int    // PostgreSQL's
	RestPort int    // Patroni's REST API
	Dir      string
	Log      string // Patroni's and PostgreSQL's output (default Dir/NAME.log)
	// Priority is its program's: the first node starts alone (and runs
	// initdb), the others once it answers (and copy it).
	Priority int

	cluster *Patroni
}

// NewPatroni makes etcd and nodes one cluster: etcd starts first, then
// the nodes in order, each once the one before answers.
func NewPatroni(scope string, etcd *Etcd, nodes ...*PatroniNode) *Patroni {
	pc := &Patroni{Scope: scope, Etcd: etcd, Nodes: nodes}
	for i, n := range nodes {
		n.cluster = pc
		if n.Priority == 0 {
			n.Priority = 2 + i
		}
	}
	return pc
}

// Engines lists etcd and every node, for Start or a stack's programs.
func (pc *Patroni) Engines() []Engine {
	out := []Engine{pc.Etcd}
	for _, n := range pc.Nodes {
		out = append(out, n)
	}
	return out
}

// Timing is the ttl, loop_wait and retry_timeout the cluster runs with
// (in seconds), its defaults filled in.
func (pc *Patroni) Timing() (ttl, loopWait, retryTimeout int) {
	ttl, loopWait, retryTimeout = pc.TTL, pc.LoopWait, pc.RetryTimeout
	if ttl == 0 {
		ttl = 10
	}
	if loopWait == 0 {
		loopWait = 1
	}
	if retryTimeout == 0 {
		retryTimeout = 3
	}
	return ttl, loopWait, retryTimeout
}

// DatabaseURL is the multi-host URL the API and consumer use: libpq (and
// pgx) try each node and keep the one that accepts writes
// (target_session_attrs=read-write), so a failover needs no new setting.
// With TLS it is over TLS, each node's certificate checked against TLS.CA
// and the name 127.0.0.1 (verify-full).
func (pc *Patroni) DatabaseURL(user, password, db string) string {
	hosts := make([]string, len(pc.Nodes))
	for i, n := range pc.Nodes {
		hosts[i] = addr(n.Port)
	}
	u := url.URL{Scheme: "postgres", Host: strings.Join(hosts, ","), Path: "/" + db,
		RawQuery: pc.sslQuery() + "&target_session_attrs=read-write"}
	u.User = url.User(user)
	if password != "" {
		u.User = url.UserPassword(user, password)
	}
	return u.String()
}

// Member is a node as Patroni's /cluster lists it.
type Member struct {
	Name     string `json:"name"`
	Role     string `json:"role"`  // leader, sync_standby, replica
	State    string `json:"state"` // running, streaming, starting, stopped…
	Timeline int    `json:"timeline"`
	Lag      any    `json:"lag"` // bytes behind the leader, or "unknown"
}

// Members is the cluster as the first node that answers sees it.
func (pc *Patroni) Members(ctx context.Context) ([]Member, error) {
	var errs []error
	for _, n := range pc.Nodes {
		var c struct {
			Members []Member `json:"members"`
		}
		if err := n.get(ctx, "/cluster", &c); err != nil {
			errs = append(errs, err)
			continue
		}
		return c.Members, nil
	}
	return nil, errors.Join(errs...)
}

// Synchronous tells whether the cluster is whole: a leader running, and a
// synchronous standby that streams from it with nothing left to replay.
func (pc *Patroni) Synchronous(ctx context.Context) error {
	members, err := pc.Members(ctx)
	if err != nil {
		return err
	}
	var leader, sync bool
	for _, m := range members {
		switch {
		case m.Role == "leader" && m.State == "running":
			leader = true
		case m.Role == "sync_standby" && (m.State == "running" || m.State == "streaming") && m.Lag == float64(0):
			sync = true
		}
	}
	if !leader || !sync {
		return fmt.Errorf("patroni %s: no running leader with a synchronous standby caught up: %s", pc.Scope, MembersLine(members))
	}
	return nil
}

// SynchronousMode is synchronous_mode in the cluster's dynamic
// configuration (Patroni's GET /config, as the first node that answers
// has it): without it no standby ever becomes synchronous, so a wait for
// Synchronous can stop at once. It fails while no node answers, or before
// the leader has written the configuration.
func (pc *Patroni) SynchronousMode(ctx context.Context) (bool, error) {
	var errs []error
	for _, n := range pc.Nodes {
		var c map[string]any
		if err := n.get(ctx, "/config", &c); err != nil {
			errs = append(errs, err)
			continue
		}
		if len(c) == 0 {
			errs = append(errs, fmt.Errorf("%s: no dynamic configuration yet", n.Name))
			continue
		}
		on, _ := c["synchronous_mode"].(bool)
		return on, nil
	}
	return false, errors.Join(errs...)
}

// MembersLine is members on one line: name role state (timeline, lag).
func MembersLine(members []Member) string {
	parts := make([]string, len(members))
	for i, m := range members {
		parts[i] = fmt.Sprintf("%s %s %s (timeline %d, lag %v)", m.Name, m.Role, m.State, m.Timeline, m.Lag)
	}
	return strings.Join(parts, ", ")
}

// Primary is the node that holds the leader key and whose PostgreSQL
// takes writes (writable).
func (pc *Patroni) Primary(ctx context.Context) (*PatroniNode, error) {
	var errs []error
	for _, n := range pc.Nodes {
		err := n.writable(ctx)
		if err == nil {
			return n, nil
		}
		errs = append(errs, err)
	}
	return nil, fmt.Errorf("patroni %s: no primary: %w", pc.Scope, errors.Join(errs...))
}

// writable tells whether the node's Patroni holds the leader key and its
// PostgreSQL has left recovery. Patroni answers /primary with 200 as soon
// as it holds the key: a promoted standby does so while its PostgreSQL
// still replays the WAL it received (seen for 5 s under load, when
// pgbackrest check found no primary); the body's role, which Patroni reads
// from pg_is_in_recovery(), says replica until the promotion is done.
func (n *PatroniNode) writable(ctx context.Context) error {
	var status struct {
		Role string `json:"role"`
	}
	if err := n.get(ctx, "/primary", &status); err != nil {
		return err
	}
	if status.Role != "master" && status.Role != "primary" {
		return fmt.Errorf("%s: leader, its PostgreSQL still a %s (promotion under way)", n.Name, status.Role)
	}
	return nil
}

// WaitPrimary waits until a primary answers and the Bootstrap SQL has run
// on it (a session of user on db through DatabaseURL succeeds).
func (pc *Patroni) WaitPrimary(ctx context.Context, user, password, db string, timeout time.Duration) error {
	return supervisor.Wait(ctx, sessionProbe{pc, pc.DatabaseURL(user, password, db)}, timeout)
}

type sessionProbe struct {
	pc  *Patroni
	dsn string
}

func (p sessionProbe) Check(ctx context.Context) error {
	if _, err := p.pc.Primary(ctx); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, p.dsn)
	if err != nil {
		return err
	}
	return conn.Close(ctx)
}

func (p sessionProbe) String() string { return "a read-write session of " + p.dsn }

// RestAddr is its Patroni's REST API, host:port.
func (n *PatroniNode) RestAddr() string { return addr(n.RestPort) }

// Addr is its PostgreSQL's, host:port.
func (n *PatroniNode) Addr() string { return addr(n.Port) }

// URL is a connection URL of this node alone, for user to database db,
// over TLS when the cluster serves it; password may be empty (trust).
func (n *PatroniNode) URL(user, password, db string) string {
	u := url.URL{Scheme: "postgres", Host: n.Addr(), Path: "/" + db, User: url.User(user), RawQuery: n.cluster.sslQuery()}
	if password != "" {
		u.User = url.UserPassword(user, password)
	}
	return u.String()
}

// sslQuery is the sslmode of the cluster's URLs: verify-full against
// TLS.CA with TLS, else disable.
func (pc *Patroni) sslQuery() string {
	if pc.TLS == nil {
		return "sslmode=disable"
	}
	return url.Values{"sslmode": {"verify-full"}, "sslrootcert": {pc.TLS.CA}}.Encode()
}

func (n *PatroniNode) data() string { return filepath.Join(n.Dir, "data") }

// get asks its REST API for path: nil when it answers 200 (and decodes the
// body into v when v is not nil).
func (n *PatroniNode) get(ctx context.Context, path string, v any) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	client, err := n.cluster.restClient()
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, n.RestURL(path), nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("%s: %w", n.Name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s %s", n.Name, path, resp.Status)
	}
	if v == nil {
		return nil
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// RestURL is the URL of path on its REST API: https with the cluster's
// TLS, else http.
func (n *PatroniNode) RestURL(path string) string {
	return n.cluster.TLS.scheme() + "://" + n.RestAddr() + path
}

// RestClientConfig is what a client of the REST API speaks: TLS trusting
// TLS.CA (the files read at each call: the stack makes them after it
// lists its programs); nil without TLS.
func (pc *Patroni) RestClientConfig() (*tls.Config, error) {
	if pc.TLS == nil {
		return nil, nil
	}
	return pc.TLS.ClientConfig()
}

// restClient asks the REST API, one connection a request.
func (pc *Patroni) restClient() (*http.Client, error) {
	cfg, err := pc.RestClientConfig()
	if err != nil {
		return nil, err
	}
	return &http.Client{Transport: &http.Transport{DisableKeepAlives: true, TLSClientConfig: cfg}}, nil
}

// restProbe is a node's GET /health, over TLS verified against the
// cluster's CA when the REST API serves TLS.
type restProbe struct{ n *PatroniNode }

func (p restProbe) Check(ctx context.Context) error {
	cfg, err := p.n.cluster.RestClientConfig()
	if err != nil {
		return err
	}
	return supervisor.HTTPProbe{Addr: p.n.RestAddr(), Path: "/health", TLS: cfg}.Check(ctx)
}

func (p restProbe) String() string { return p.n.RestURL("/health") }

// KillPostgres kills -9 the PostgreSQL it runs: the postmaster and every
// process of it (backends, walsenders, checkpointer…), found by their
// working directory, the data directory. Killing the postmaster alone (or
// its process group: each child makes a session of its own) leaves its
// children to notice and exit, and one that does not (an idle backend did
// not, under load, for minutes) holds the shared memory, so no new
// postmaster can start on the data directory. It returns the
// postmaster's pid.
func (n *PatroniNode) KillPostgres() (int, error) {
	pid := n.PostmasterPid()
	if pid == 0 {
		return 0, fmt.Errorf("%s: no PostgreSQL runs", n.Name)
	}
	data, err := filepath.EvalSymlinks(n.data())
	if err != nil {
		return pid, err
	}
	for range 100 {
		procs := processesIn(data)
		if len(procs) == 0 {
			return pid, nil
		}
		for _, p := range procs {
			_ = syscall.Kill(p, syscall.SIGKILL)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return pid, fmt.Errorf("%s: processes %v in %s survive SIGKILL", n.Name, processesIn(data), data)
}

// processesIn lists the live processes whose working directory is dir
// (a killed one, a zombie until reaped, has none).
func processesIn(dir string) []int {
	entries, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if cwd, err := os.Readlink(filepath.Join("/proc", e.Name(), "cwd")); err == nil && cwd == dir {
			out = append(out, pid)
		}
	}
	return out
}

// Lose is the loss of its machine: Patroni and PostgreSQL killed -9
// together, and Patroni kept down (stopped under sup, which restarts it
// only on Start). Patroni is frozen first, so it neither sees its
// PostgreSQL die nor gets a SIGTERM: on a SIGTERM the leader would hand
// its key over at once, which a lost machine does not do, and a Patroni
// that saw its PostgreSQL die would start it again. The standby is
// promoted only once the key expires (ttl).
func (n *PatroniNode) Lose(ctx context.Context, sup *supervisor.Supervisor) error {
	freeze(ctx, sup, n.Name)
	_, pgErr := n.KillPostgres()
	return errors.Join(pgErr, fence(ctx, sup, n.Name))
}

// PostmasterPid is the pid of the PostgreSQL it runs (0 when none runs).
func (n *PatroniNode) PostmasterPid() int {
	b, err := os.ReadFile(filepath.Join(n.data(), "postmaster.pid"))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0]))
	if pid <= 0 || syscall.Kill(pid, 0) != nil {
		return 0
	}
	return pid
}

// Init writes its Patroni configuration, and the post_bootstrap script
// that runs the cluster's Bootstrap SQL, into Dir (owned by postgres).
// Patroni makes the data directory itself: initdb on the node that takes
// the initialize key, a copy of the leader (pg_basebackup) on the others.
func (n *PatroniNode) Init(context.Context) error {
	acct, err := systemUser("postgres")
	if err != nil {
		return err
	}
	if err := acct.mkdirs(n.Dir); err != nil {
		return err
	}
	if err := n.cluster.TLS.own(acct); err != nil {
		return err
	}
	if a := n.cluster.Archive; a != nil {
		n.cluster.archiveHosts()
		if err := a.write(); err != nil {
			return err
		}
		if !n.cluster.recoverTo.IsZero() {
			if err := n.writeRestoreScript(acct); err != nil {
				return err
			}
		}
	}
	conf, err := n.config()
	if err != nil {
		return err
	}
	sql := strings.Join(n.cluster.Bootstrap, ";\n")
	if sql != "" {
		sql += ";\n"
	}
	psql := "psql"
	if bin, err := binDir(); err == nil {
		psql = filepath.Join(bin, "psql")
	}
	script := "#!/bin/sh\n# Patroni's post_bootstrap: the cluster's bootstrap SQL (engine.Patroni.Bootstrap), once, on the first primary.\nexec " +
		psql + " -X -q -v ON_ERROR_STOP=1 -d \"$1\" -f " + n.bootstrapSQL() + "\n"
	if err := acct.writeFile(n.bootstrapSQL(), sql); err != nil {
		return err
	}
	if err := acct.writeFile(n.postBootstrap(), script); err != nil {
		return err
	}
	if err := os.Chmod(n.postBootstrap(), 0o755); err != nil {
		return err
	}
	return acct.writeFile(n.configFile(), conf)
}

func (n *PatroniNode) configFile() string    { return filepath.Join(n.Dir, "patroni.yml") }
func (n *PatroniNode) bootstrapSQL() string  { return filepath.Join(n.Dir, "bootstrap.sql") }
func (n *PatroniNode) postBootstrap() string { return filepath.Join(n.Dir, "post_bootstrap.sh") }

// config is its patroni.yml. Authentication is the cluster's (trust on
// loopback without a Password, as for the tests' private instances);
// pg_hba is written whole by Patroni (bootstrap.pg_hba would land after
// initdb's own lines).
func (n *PatroniNode) config() (string, error) {
	bin, err := binDir()
	if err != nil {
		return "", err
	}
	pc := n.cluster
	ttl, loopWait, retryTimeout := pc.Timing()
	if loopWait+2*retryTimeout > ttl {
		return "", fmt.Errorf("patroni %s: loop_wait %d + 2 × retry_timeout %d passes ttl %d", pc.Scope, loopWait, retryTimeout, ttl)
	}
	params := map[string]any{
		"wal_log_hints": "on", "max_connections": maxConnections,
		"wal_level": "replica", "hot_standby": "on",
		"max_wal_senders": 10, "max_replication_slots": 10,
	}
	for k, v := range pc.archiveParameters() {
		params[k] = v
	}
	if pc.TLS != nil {
		params["ssl"] = "on"
		params["ssl_cert_file"], params["ssl_key_file"] = pc.TLS.Cert, pc.TLS.Key
	}
	for k, v := range pc.Parameters {
		params[k] = v
	}
	etcd3, err := pc.etcd3()
	if err != nil {
		return "", err
	}
	conf := map[string]any{
		"scope":   pc.Scope,
		"name":    n.Name,
		"log":     map[string]any{"level": "INFO", "format": "%(asctime)s %(levelname)s: %(message)s"},
		"restapi": n.restapi(),
		"etcd3":   etcd3,
		"bootstrap": map[string]any{
			"dcs": map[string]any{
				"ttl": ttl, "loop_wait": loopWait, "retry_timeout": retryTimeout,
				"maximum_lag_on_failover": 1 << 20,
				"synchronous_mode":        true,
				"postgresql": map[string]any{
					"use_pg_rewind": true, "use_slots": true,
					"parameters": params,
				},
			},
			"initdb":         pc.initdb(),
			"post_bootstrap": n.postBootstrap(),
		},
		"postgresql": map[string]any{
			"listen": n.Addr(), "connect_address": n.Addr(),
			"data_dir": n.data(), "bin_dir": bin,
			"pgpass":         filepath.Join(n.Dir, "pgpass"),
			"authentication": pc.authentication(),
			"parameters":     n.localParameters(),
			// A new standby's copy starts at once, not after a spread
			// checkpoint (minutes on a loaded machine).
			"basebackup": []any{map[string]any{"checkpoint": "fast"}},
			"pg_hba":     pc.hba(),
		},
		"tags": map[string]any{"nofailover": false, "noloadbalance": false, "clonefrom": false, "nosync": false},
	}
	if !pc.recoverTo.IsZero() {
		n.recoveryBootstrap(conf["bootstrap"].(map[string]any))
	}
	b, err := yaml.Marshal(conf)
	return "# Written by kvstack (internal/engine.PatroniNode); rewritten at each start.\n" + string(b), err
}

// authentication is Patroni's users: with a Password, each its own with
// its password, over verified TLS when the cluster serves it (Patroni
// passes the ssl settings to every session it makes: its own, the
// standbys' primary_conninfo, pg_basebackup's, pg_rewind's); without,
// trusted users whose passwords nothing checks.
func (pc *Patroni) authentication() map[string]any {
	if pc.Password == "" {
		return map[string]any{
			"superuser":   map[string]any{"username": "postgres", "password": "postgres"},
			"replication": map[string]any{"username": "replicator", "password": "replicator"},
			"rewind":      map[string]any{"username": "postgres", "password": "postgres"},
		}
	}
	user := func(name, password string) map[string]any {
		u := map[string]any{"username": name, "password": password}
		if pc.TLS != nil {
			u["sslmode"], u["sslrootcert"] = "verify-full", pc.TLS.CA
		}
		return u
	}
	return map[string]any{
		"superuser":   user("postgres", pc.Password),
		"replication": user(replicationUser, pc.ReplicationPassword),
		"rewind":      user(rewindUser, pc.RewindPassword),
	}
}

// The users Patroni makes at the bootstrap of a locked cluster.
const (
	replicationUser = "replicator"
	rewindUser      = "rewinder"
)

// RestUser is the user of the REST API's basic auth (RestPassword).
const RestUser = "patroni"

// restapi is a node's restapi section: where it listens, the basic auth
// its unsafe endpoints ask for (RestPassword), and with the cluster's TLS
// its certificate, and the CA its unsafe endpoints' client certificates
// (and the other nodes' certificates, for Patroni's own requests and
// patronictl's) must chain to.
func (n *PatroniNode) restapi() map[string]any {
	r := map[string]any{"listen": n.RestAddr(), "connect_address": n.RestAddr()}
	if pw := n.cluster.RestPassword; pw != "" {
		r["authentication"] = map[string]any{"username": RestUser, "password": pw}
	}
	if t := n.cluster.TLS; t != nil {
		r["certfile"], r["keyfile"], r["cafile"] = t.Cert, t.Key, t.CA
		r["verify_client"] = "optional"
	}
	return r
}

// hba is every node's pg_hba.conf: hbaLines with a Password (the
// replication user alone may replicate), else trust on loopback.
func (pc *Patroni) hba() []string {
	if pc.Password == "" {
		return []string{
			"local all all trust",
			"host all all 127.0.0.1/32 trust",
			"host replication all 127.0.0.1/32 trust",
		}
	}
	return hbaLines(pc.TLS != nil, replicationUser)
}

// initdb is initdb's options: with a Password, Patroni gives it the
// superuser's (--pwfile) and nothing is trusted even before Patroni
// writes pg_hba.conf.
func (pc *Patroni) initdb() []any {
	auth := map[string]any{"auth": "trust"}
	if pc.Password != "" {
		auth = map[string]any{"auth-host": "scram-sha-256"}
		return []any{map[string]any{"encoding": "UTF8"}, map[string]any{"locale": "C.UTF-8"}, auth, map[string]any{"auth-local": "peer"}}
	}
	return []any{map[string]any{"encoding": "UTF8"}, map[string]any{"locale": "C.UTF-8"}, auth}
}

// Program runs Patroni in the foreground, as postgres. A stop (SIGTERM)
// makes Patroni stop PostgreSQL and give up the leader key at once.
func (n *PatroniNode) Program() supervisor.Program {
	if n.cluster.Archive != nil {
		n.cluster.archiveHosts()
	}
	acct, _ := systemUser("postgres")
	return supervisor.Program{
		Name: n.Name, Command: []string{"patroni", n.configFile()},
		// libpq looks for a client certificate in ~/.postgresql: postgres's
		// home, not the root's it cannot read (a refused stat fails every
		// TLS session).
		Env: map[string]string{"HOME": acct.home},
		Dir: n.Dir, User: acct.name, Priority: n.Priority, StopWait: 60 * time.Second,
		Health: restProbe{n}, Addr: n.Addr(),
		Log: logFile(n.Log, n.Dir, n.Name),
	}
}
