package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// PgBackRest archives a private PostgreSQL's WAL and takes its base
// backups with pgBackRest (the Debian package) into a local repository,
// and restores it to a point in time. Set it as a Postgres' Archive: its
// program then runs with archive_mode on, archive_command pushing each
// segment into the repository, and a unix socket in the Postgres' Dir,
// through which pgBackRest talks to it. Or set it as a Patroni cluster's
// Archive: every node archives into it, and pgBackRest backs the cluster
// up from whichever node is the primary. Every command runs as user
// postgres, as pgBackRest requires.
type PgBackRest struct {
	// Stanza names the cluster in the repository (default "kvstack").
	Stanza string
	// Dir holds the repository (Dir/repo), pgBackRest's configuration,
	// logs, lock and spool files. A real deployment puts the repository
	// on another disk or in an object store (repo1-type=s3); here it is
	// local, which survives a truncated table or a removed data directory,
	// not the loss of the disk.
	Dir string
	// RetentionFull is how many full backups the repository keeps, with
	// the WAL they need (default 2).
	RetentionFull int
	// ArchiveTimeout is PostgreSQL's archive_timeout: the longest a
	// committed transaction waits before its WAL segment is archived, so
	// the most writes lost with the data directory when traffic is low
	// (default 60 s).
	ArchiveTimeout time.Duration

	// pg is the single PostgreSQL it archives (Restore rebuilds it); hosts
	// are the servers pgbackrest.conf names, pg1, pg2…: that one, or every
	// node of a Patroni cluster.
	pg    *Postgres
	hosts []pgHost
}

// pgHost is a PostgreSQL server as pgBackRest reaches it: its data
// directory, its port and its unix socket's directory.
type pgHost struct {
	data   string
	port   int
	socket string
}

func (b *PgBackRest) stanza() string {
	if b.Stanza == "" {
		return "kvstack"
	}
	return b.Stanza
}

// ConfPath is pgBackRest's configuration file, which Init writes.
func (b *PgBackRest) ConfPath() string { return filepath.Join(b.Dir, "pgbackrest.conf") }

// RepoPath is the repository.
func (b *PgBackRest) RepoPath() string { return filepath.Join(b.Dir, "repo") }

func (b *PgBackRest) archiveTimeout() time.Duration {
	if b.ArchiveTimeout <= 0 {
		return time.Minute
	}
	return b.ArchiveTimeout
}

// settings are the PostgreSQL settings that archive into the repository,
// as -c arguments of its program. The socket lives in the Postgres' own
// directory: never in the shared /var/run/postgresql.
func (b *PgBackRest) settings(p *Postgres) []string {
	push := fmt.Sprintf("pgbackrest --config=%s --stanza=%s archive-push %%p", b.ConfPath(), b.stanza())
	return []string{"-c", "archive_mode=on", "-c", "archive_command=" + push,
		"-c", "archive_timeout=" + strconv.Itoa(int(b.archiveTimeout().Seconds())),
		"-c", "unix_socket_directories=" + p.Dir}
}

// archiveCommand is the archive_command of a server whose data directory
// is data, one of several that archive into the stanza: PostgreSQL gives
// a segment's path relative to its data directory, which pgBackRest reads
// as relative to pg1-path, so each names its own.
func (b *PgBackRest) archiveCommand(data string) string {
	return fmt.Sprintf("pgbackrest --config=%s --stanza=%s --pg1-path=%s archive-push %%p", b.ConfPath(), b.stanza(), data)
}

// restoreCommand is the restore_command of a server whose data directory
// is data (relative paths again).
func (b *PgBackRest) restoreCommand(data string) string {
	return fmt.Sprintf("pgbackrest --config=%s --stanza=%s --pg1-path=%s archive-get %%f \"%%p\"", b.ConfPath(), b.stanza(), data)
}

// conf is pgbackrest.conf for its hosts.
func (b *PgBackRest) conf() string {
	retention := b.RetentionFull
	if retention <= 0 {
		retention = 2
	}
	conf := fmt.Sprintf(`# Written by kvstack (internal/engine/pgbackrest.go); rewritten at each start.
[global]
repo1-path=%s
repo1-retention-full=%d
log-path=%s
lock-path=%s
spool-path=%s
log-level-console=warn
log-level-file=info
# A backup starts with an immediate checkpoint, not a spread one.
start-fast=y
compress-type=lz4
# archive-push and check wait this long for a segment to reach the repository.
archive-timeout=60

[%s]
`, b.RepoPath(), retention, filepath.Join(b.Dir, "log"), filepath.Join(b.Dir, "lock"), filepath.Join(b.Dir, "spool"),
		b.stanza())
	for i, h := range b.hosts {
		conf += fmt.Sprintf("pg%[1]d-path=%[2]s\npg%[1]d-port=%[3]d\npg%[1]d-socket-path=%[4]s\npg%[1]d-user=postgres\n", i+1, h.data, h.port, h.socket)
	}
	return conf
}

// prepare writes the configuration for p and makes the directories,
// owned by the Postgres' user; it needs no running server.
func (b *PgBackRest) prepare(p *Postgres) error {
	b.archives(p)
	return b.write()
}

// archives makes p the PostgreSQL it archives.
func (b *PgBackRest) archives(p *Postgres) {
	b.pg = p
	b.hosts = []pgHost{{p.data(), p.Port, p.Dir}}
}

// write writes the configuration for its hosts and makes the
// directories.
func (b *PgBackRest) write() error {
	acct, err := systemUser("postgres")
	if err != nil {
		return err
	}
	if err := acct.mkdirs(b.Dir, b.RepoPath(), filepath.Join(b.Dir, "log"), filepath.Join(b.Dir, "lock"), filepath.Join(b.Dir, "spool")); err != nil {
		return err
	}
	return acct.writeFile(b.ConfPath(), b.conf())
}

// CreateStanza makes the stanza in the repository (a no-op when it
// exists and matches the server). The server must run. It takes both of
// the stanza's locks, so it fails with a *LockedError while a backup runs
// (EnsureStanza skips it when the stanza exists; WhenFree waits).
func (b *PgBackRest) CreateStanza(ctx context.Context) error {
	_, err := b.run(ctx, "stanza-create")
	return err
}

// Check forces a WAL switch and waits until that segment reaches the
// repository (pgbackrest check): afterwards every transaction committed
// before the call can be restored. The server must run.
func (b *PgBackRest) Check(ctx context.Context) error {
	_, err := b.run(ctx, "check")
	return err
}

// Backup takes a base backup: kind is full, diff (the changes since the
// last full) or incr (since the last backup of any kind). A diff or incr
// without a full backup in the repository becomes a full one. The server
// must run; writes go on meanwhile. While another backup runs it fails at
// once with a *LockedError (WhenFree waits).
func (b *PgBackRest) Backup(ctx context.Context, kind string) error {
	_, err := b.run(ctx, "--type="+kind, "backup")
	return err
}

// BackupInfo is one backup in the repository.
type BackupInfo struct {
	Label string
	Type  string // full, diff, incr
	Start time.Time
	Stop  time.Time // the backup is consistent from this moment on
	Size  int64     // of the database, bytes
}

// RepoInfo is what pgbackrest info says of the stanza.
type RepoInfo struct {
	Status string // "ok", or why not
	// Code is pgBackRest's status code: 0 ok, 1 missing stanza path,
	// 2 no valid backups, 3 missing stanza data, 99 other…
	Code    int
	Backups []BackupInfo
	// WALMin and WALMax are the oldest and newest segment archived.
	WALMin, WALMax string
}

// Info reads the repository (pgbackrest info --output=json); the server
// need not run.
func (b *PgBackRest) Info(ctx context.Context) (RepoInfo, error) {
	out, err := b.run(ctx, "--output=json", "info")
	if err != nil {
		return RepoInfo{}, err
	}
	return parseInfo(out)
}

func parseInfo(out []byte) (RepoInfo, error) {
	var stanzas []struct {
		Status struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		} `json:"status"`
		Archive []struct {
			Min string `json:"min"`
			Max string `json:"max"`
		} `json:"archive"`
		Backup []struct {
			Label     string `json:"label"`
			Type      string `json:"type"`
			Timestamp struct {
				Start int64 `json:"start"`
				Stop  int64 `json:"stop"`
			} `json:"timestamp"`
			Info struct {
				Size int64 `json:"size"`
			} `json:"info"`
		} `json:"backup"`
	}
	if err := json.Unmarshal(out, &stanzas); err != nil {
		return RepoInfo{}, fmt.Errorf("pgbackrest info: %w", err)
	}
	if len(stanzas) != 1 {
		return RepoInfo{}, fmt.Errorf("pgbackrest info: %d stanzas, want 1", len(stanzas))
	}
	s := stanzas[0]
	info := RepoInfo{Status: "ok", Code: s.Status.Code}
	if s.Status.Code != 0 {
		info.Status = s.Status.Message
	}
	for _, a := range s.Archive {
		if info.WALMin == "" || a.Min < info.WALMin {
			info.WALMin = a.Min
		}
		if a.Max > info.WALMax {
			info.WALMax = a.Max
		}
	}
	for _, bk := range s.Backup {
		info.Backups = append(info.Backups, BackupInfo{Label: bk.Label, Type: bk.Type,
			Start: time.Unix(bk.Timestamp.Start, 0), Stop: time.Unix(bk.Timestamp.Stop, 0), Size: bk.Info.Size})
	}
	return info, nil
}

// StanzaExists says whether the repository holds the stanza (with or
// without a backup yet).
func (i RepoInfo) StanzaExists() bool {
	switch i.Code {
	case 0, 2: // ok, no valid backups
		return true
	}
	return false
}

// Restore rebuilds the Postgres' data directory from the repository as
// it was at target: the newest backup that ended before target, then the
// archived WAL replayed up to target (inclusive), then promoted to a new
// timeline that archives into the same stanza. The server must be
// stopped. A data directory still there is moved aside, to NAME.before-
// restore-<time>, which Restore returns ("" when there was none): the
// caller removes it once the restore is judged good.
//
// Every transaction committed up to target must be archived first: Check
// does it while the server still runs. PostgreSQL refuses to start when
// the WAL ends before target ("recovery ended before configured recovery
// target was reached").
func (b *PgBackRest) Restore(ctx context.Context, target time.Time) (aside string, err error) {
	if b.pg == nil {
		return "", errors.New("pgbackrest: restore of a Postgres whose program was never made (Program)")
	}
	data := b.pg.data()
	if aside, err = moveAside(data); err != nil {
		return "", err
	}
	acct, err := systemUser("postgres")
	if err != nil {
		return aside, err
	}
	if err := acct.mkdirs(data); err != nil {
		return aside, err
	}
	if err := os.Chmod(data, 0o700); err != nil {
		return aside, err
	}
	get := fmt.Sprintf("pgbackrest --config=%s --stanza=%s archive-get %%f \"%%p\"", b.ConfPath(), b.stanza())
	_, err = b.run(ctx, "--type=time", "--target="+FormatTarget(target), "--target-action=promote",
		"--recovery-option=restore_command="+get, "restore")
	return aside, err
}

// moveAside renames a data directory to NAME.before-restore-<time> and
// returns that name ("" when there was no such directory).
func moveAside(data string) (string, error) {
	if _, err := os.Stat(data); err != nil {
		return "", nil
	}
	aside := fmt.Sprintf("%s.before-restore-%s", data, time.Now().UTC().Format("20060102T150405"))
	return aside, os.Rename(data, aside)
}

// FormatTarget is a time as PostgreSQL's recovery_target_time reads it:
// microseconds, UTC.
func FormatTarget(t time.Time) string {
	return t.UTC().Format("2006-01-02 15:04:05.000000") + "+00"
}

// run runs pgbackrest COMMAND as the Postgres' user with the stanza and
// the configuration, and returns its standard output.
func (b *PgBackRest) run(ctx context.Context, args ...string) ([]byte, error) {
	if len(b.hosts) == 0 {
		return nil, errors.New("pgbackrest: no PostgreSQL archives into it (set it as a Postgres' or a Patroni's Archive)")
	}
	acct, err := systemUser("postgres")
	if err != nil {
		return nil, err
	}
	argv := append([]string{"--config=" + b.ConfPath(), "--stanza=" + b.stanza()}, args...)
	cmd := exec.CommandContext(ctx, "pgbackrest", argv...)
	cmd.Dir = b.Dir
	if os.Geteuid() == 0 { // else it runs as we are (the backup scheduler runs as postgres)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(acct.uid), Gid: uint32(acct.gid)}}
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		if errors.Is(err, exec.ErrNotFound) {
			return nil, errors.New("pgbackrest is not installed: make setup-all")
		}
		err = fmt.Errorf("pgbackrest %s: %w: %s%s", args[len(args)-1], err, strings.TrimSpace(stderr.String()), strings.TrimSpace(string(out)))
		if cmd.ProcessState != nil && cmd.ProcessState.ExitCode() == lockAcquireExit {
			h, _ := b.Holder()
			err = &LockedError{Holder: h, Err: err}
		}
		return out, err
	}
	return out, nil
}
