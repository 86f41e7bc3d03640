package engine

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/kvstack/kvstack/internal/supervisor"
)

// Postgres is a private PostgreSQL cluster: initdb'd into Dir/data,
// listening on 127.0.0.1:Port, no unix socket, run as user postgres when we
// are root. Without a Password, loopback sessions are trusted (the tests'
// instances, nobody else's); with one, every TCP session proves a password.
type Postgres struct {
	Name string // the program's name (default "postgres")
	Port int
	Dir  string
	Log  string // its output (default Dir/NAME.log)
	// Immediate makes a stop an immediate shutdown (SIGQUIT: no checkpoint,
	// crash recovery at the next start), as a fault injection wants; by
	// default a stop is a fast shutdown (SIGINT: clients disconnected,
	// checkpoint).
	Immediate bool
	// Priority is its program's (default 1): the supervisor starts lower
	// priorities first, and Init runs just before its priority's group
	// starts (InitBefore).
	Priority int
	// Archive, when set, archives its WAL and takes its base backups with
	// pgBackRest (PgBackRest): point-in-time recovery.
	Archive *PgBackRest
	// TLS, when set, is served to clients that ask for it (ssl=on); the
	// others are still served in plain text unless TLSOnly.
	TLS *TLS
	// TLSOnly refuses every TCP session that is not over TLS (hostssl):
	// with TLS and a Password.
	TLSOnly bool
	// Password, when set, is the superuser postgres's, and the cluster's
	// pg_hba.conf (rewritten at each Init) asks every TCP session for a
	// password (scram-sha-256); only the postgres OS user comes in
	// unchecked, over the unix socket (peer: pgBackRest).
	Password string
}

func (p *Postgres) name() string {
	if p.Name == "" {
		return "postgres"
	}
	return p.Name
}

// binDir is the newest PostgreSQL installed (/usr/lib/postgresql/N/bin).
func binDir() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin/postgres")
	if len(dirs) == 0 {
		return "", errors.New("PostgreSQL is not installed (/usr/lib/postgresql/*/bin/postgres): make setup")
	}
	slices.SortFunc(dirs, func(a, b string) int { return version(a) - version(b) })
	return filepath.Dir(dirs[len(dirs)-1]), nil
}

func version(path string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(path))))
	return n
}

// Init makes Dir/data (initdb) when it does not exist yet.
func (p *Postgres) Init(ctx context.Context) error {
	if p.Archive != nil {
		if err := p.Archive.prepare(p); err != nil {
			return err
		}
	}
	acct, err := systemUser("postgres")
	if err != nil {
		return err
	}
	if err := p.TLS.own(acct); err != nil {
		return err
	}
	if !p.hasData() {
		if err := acct.mkdirs(p.Dir); err != nil {
			return err
		}
		if err := p.initdb(ctx, acct); err != nil {
			return err
		}
	}
	return p.authenticate(ctx, acct)
}

func (p *Postgres) data() string { return filepath.Join(p.Dir, "data") }

func (p *Postgres) hasData() bool {
	_, err := os.Stat(filepath.Join(p.data(), "PG_VERSION"))
	return err == nil
}

// initdb makes a new cluster. Its postgresql.conf gets the command line's
// max_connections (else every reload logs that the file's cannot be
// applied).
func (p *Postgres) initdb(ctx context.Context, acct account) error {
	args := []string{"-D", p.data(), "--auth=trust", "-U", "postgres", "-E", "UTF8", "--locale=C.UTF-8"}
	if p.Password != "" {
		pwfile := filepath.Join(p.Dir, "initdb-password")
		if err := os.WriteFile(pwfile, []byte(p.Password+"\n"), 0o600); err != nil {
			return err
		}
		defer os.Remove(pwfile)
		if err := os.Chown(pwfile, acct.uid, acct.gid); err != nil {
			return err
		}
		args = append(args, "--auth-host=scram-sha-256", "--auth-local=peer", "--pwfile="+pwfile)
	}
	if err := p.runAs(ctx, acct, "initdb", args...); err != nil {
		return err
	}
	f, err := os.OpenFile(filepath.Join(p.data(), "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString("\n# kvstack (internal/engine)\nmax_connections = " + maxConnections + "\n")
	return errors.Join(err, f.Close())
}

const maxConnections = "200"

// hbaMark heads the pg_hba.conf that authenticate writes; it names the
// password's hash, so that a new password is set once, as the old one
// was.
const hbaMark = "# kvstack (internal/engine): passwords, password "

// authenticate makes, with a Password, the cluster's pg_hba.conf ask every
// TCP session for a password (over TLS alone with TLSOnly) and the
// superuser's password be Password. A cluster made before with trust, or
// with another password, gets it in single-user mode, which needs the
// server stopped: Init runs before the server starts.
func (p *Postgres) authenticate(ctx context.Context, acct account) error {
	if p.Password == "" {
		return nil
	}
	sum := sha256.Sum256([]byte(p.Password))
	hba := hbaMark + hex.EncodeToString(sum[:8]) + "\n" + strings.Join(hbaLines(p.TLSOnly, "all"), "\n") + "\n"
	path := filepath.Join(p.data(), "pg_hba.conf")
	old, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if string(old) == hba {
		return nil
	}
	if !strings.HasPrefix(string(old), hba[:strings.Index(hba, "\n")+1]) {
		stmt := "ALTER ROLE postgres PASSWORD " + quoteLiteral(p.Password) + ";\n"
		if err := p.runAsInput(ctx, acct, stmt, "postgres", "--single", "-D", p.data(), "-c", "max_connections="+maxConnections, "postgres"); err != nil {
			return fmt.Errorf("set the superuser's password (the server must be stopped): %w", err)
		}
	}
	return acct.writeFile(path, hba)
}

// hbaLines are the pg_hba.conf of a locked server, a single one or a
// Patroni node: a password (scram-sha-256) for every TCP session, over TLS
// alone with tlsOnly (hostssl), replication for replicators only; the
// postgres OS user alone comes in unchecked, as the superuser, by peer
// over the unix socket (pgBackRest's sessions). No trust line.
func hbaLines(tlsOnly bool, replicators string) []string {
	host := "host"
	if tlsOnly {
		host = "hostssl"
	}
	return []string{
		"local all postgres peer",
		host + " all all 127.0.0.1/32 scram-sha-256",
		host + " replication " + replicators + " 127.0.0.1/32 scram-sha-256",
	}
}

// runAs runs a PostgreSQL program as acct in Dir, its stdin empty (no
// password prompt can wait).
func (p *Postgres) runAs(ctx context.Context, acct account, program string, args ...string) error {
	return p.runAsInput(ctx, acct, "", program, args...)
}

// runAsInput is runAs with input on its stdin.
func (p *Postgres) runAsInput(ctx context.Context, acct account, input, program string, args ...string) error {
	bin, err := binDir()
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, filepath.Join(bin, program), args...)
	cmd.Dir = p.Dir
	cmd.Stdin = strings.NewReader(input)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(acct.uid), Gid: uint32(acct.gid)}}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s %s: %w\n%s", program, p.data(), err, out)
	}
	return nil
}

// IsPrimary asks the server whether it is a primary (not in recovery).
func (p *Postgres) IsPrimary(ctx context.Context) (bool, error) {
	var primary bool
	err := p.query(ctx, func(conn *pgx.Conn) error {
		return conn.QueryRow(ctx, "SELECT NOT pg_is_in_recovery()").Scan(&primary)
	})
	return primary, err
}

// query runs fn on a superuser session of its own, bounded to 5 s.
func (p *Postgres) query(ctx context.Context, fn func(*pgx.Conn) error) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, p.URL("postgres", p.Password, "postgres"))
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	return fn(conn)
}

// Program runs the postmaster in the foreground.
func (p *Postgres) Program() supervisor.Program {
	bin, err := binDir()
	if err != nil {
		bin = "/usr/lib/postgresql/missing/bin" // Init reports it
	}
	acct, _ := systemUser("postgres")
	priority := p.Priority
	if priority == 0 {
		priority = 1
	}
	stop := "INT"
	if p.Immediate {
		stop = "QUIT"
	}
	command := []string{filepath.Join(bin, "postgres"), "-D", p.data(),
		"-c", "listen_addresses=127.0.0.1", "-c", "port=" + strconv.Itoa(p.Port),
		"-c", "unix_socket_directories=", "-c", "max_connections=" + maxConnections}
	if p.Archive != nil {
		p.Archive.archives(p)
		command = append(command, p.Archive.settings(p)...)
	}
	if p.TLS != nil {
		command = append(command, "-c", "ssl=on", "-c", "ssl_cert_file="+p.TLS.Cert, "-c", "ssl_key_file="+p.TLS.Key)
	}
	return supervisor.Program{
		Name:    p.name(),
		Command: command,
		Dir:     p.Dir, User: acct.name, Priority: priority, StopSignal: stop, StopWait: 60 * time.Second,
		Health: pgProbe{p}, Addr: addr(p.Port), Log: logFile(p.Log, p.Dir, p.name()),
	}
}

// URL is a connection URL for user to database db (without the cluster's
// Password, trust: no password is checked, but one may be given for the
// application's sake). With TLSOnly it is over TLS, the server's
// certificate checked against TLS.CA and the name 127.0.0.1
// (verify-full).
func (p *Postgres) URL(user, password, db string) string {
	u := url.URL{Scheme: "postgres", Host: addr(p.Port), Path: "/" + db, RawQuery: "sslmode=disable"}
	if p.TLSOnly {
		u.RawQuery = url.Values{"sslmode": {"verify-full"}, "sslrootcert": {p.TLS.CA}}.Encode()
	}
	u.User = url.User(user)
	if password != "" {
		u.User = url.UserPassword(user, password)
	}
	return u.String()
}

// CreateDatabase makes a login role and a database it owns, unless they
// exist.
func (p *Postgres) CreateDatabase(ctx context.Context, db, owner, password string) error {
	conn, err := pgx.Connect(ctx, p.URL("postgres", p.Password, "postgres"))
	if err != nil {
		return fmt.Errorf("private PostgreSQL on %s: %w", addr(p.Port), err)
	}
	defer conn.Close(ctx)
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT FROM pg_roles WHERE rolname = $1)", owner).Scan(&exists); err != nil {
		return err
	}
	if !exists {
		if _, err := conn.Exec(ctx, fmt.Sprintf("CREATE ROLE %s LOGIN PASSWORD %s", pgx.Identifier{owner}.Sanitize(), quoteLiteral(password))); err != nil {
			return err
		}
	}
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT FROM pg_database WHERE datname = $1)", db).Scan(&exists); err != nil {
		return err
	}
	if !exists {
		if _, err := conn.Exec(ctx, fmt.Sprintf("CREATE DATABASE %s OWNER %s", pgx.Identifier{db}.Sanitize(), pgx.Identifier{owner}.Sanitize())); err != nil {
			return err
		}
	}
	return nil
}

// Role is a login role to make on the server (CreateRoles): kvstack's
// DML role and its exporter's (docs/SECURITY.md, least privilege).
type Role struct {
	Name, Password string
	// In are roles it is made a member of (pg_monitor for an exporter).
	In []string
}

// RoleSQL makes r, or sets its password and memberships when it exists:
// LOGIN, and nothing else (no CREATEDB, no CREATEROLE, not a superuser).
// A server's bootstrap (Patroni's post_bootstrap, an init script) may
// run it as it is.
func RoleSQL(r Role) []string {
	name := pgx.Identifier{r.Name}.Sanitize()
	stmts := []string{
		// CREATE ROLE has no IF NOT EXISTS: a DO block tests for it.
		fmt.Sprintf(`DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = %s) THEN CREATE ROLE %s; END IF; END $$`,
			quoteLiteral(r.Name), name),
		fmt.Sprintf("ALTER ROLE %s LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION PASSWORD %s", name, quoteLiteral(r.Password)),
	}
	for _, in := range r.In {
		stmts = append(stmts, fmt.Sprintf("GRANT %s TO %s", pgx.Identifier{in}.Sanitize(), name))
	}
	return stmts
}

// CreateRoles makes each role (RoleSQL), as the superuser.
func (p *Postgres) CreateRoles(ctx context.Context, roles ...Role) error {
	conn, err := pgx.Connect(ctx, p.URL("postgres", p.Password, "postgres"))
	if err != nil {
		return fmt.Errorf("private PostgreSQL on %s: %w", addr(p.Port), err)
	}
	defer conn.Close(ctx)
	for _, r := range roles {
		for _, stmt := range RoleSQL(r) {
			if _, err := conn.Exec(ctx, stmt); err != nil {
				return fmt.Errorf("role %s: %w", r.Name, err)
			}
		}
	}
	return nil
}

func quoteLiteral(s string) string {
	out := []byte{'\''}
	for i := range len(s) {
		if s[i] == '\'' {
			out = append(out, '\'')
		}
		out = append(out, s[i])
	}
	return string(append(out, '\''))
}

// pgProbe answers once the server accepts a session: a TCP port that is
// open while the server still recovers does not count.
type pgProbe struct{ p *Postgres }

func (pr pgProbe) Check(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, pr.p.URL("postgres", pr.p.Password, "postgres"))
	if err != nil {
		return err
	}
	return conn.Close(ctx)
}

func (pr pgProbe) String() string { return "postgres session on " + addr(pr.p.Port) }
