package engine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/kvstack/kvstack/internal/supervisor"
)

// Point-in-time recovery of a Patroni cluster with pgBackRest (its
// Archive). Every node archives its WAL into the one stanza, whichever is
// the primary: a new primary's timeline follows the old one's in the
// archive. The repository's configuration names every node (pg1, pg2…);
// pgBackRest backs up from the one that is the primary. A restore is
// Patroni's own: the cluster is bootstrapped again by a custom bootstrap
// method that runs pgbackrest restore, and the other nodes are copied
// from the new primary.

// archiveMethod is the name of the custom bootstrap method in patroni.yml.
const archiveMethod = "pgbackrest"

// archiveParameters are the cluster-wide PostgreSQL settings of an
// archiving cluster (in the DCS): archive_mode needs a restart, so it is
// there from the first start.
func (pc *Patroni) archiveParameters() map[string]any {
	if pc.Archive == nil {
		return nil
	}
	return map[string]any{"archive_mode": "on", "archive_timeout": int(pc.Archive.archiveTimeout().Seconds())}
}

// localParameters are the node's own PostgreSQL settings (Patroni lets
// them override the DCS'): its archive_command names its data directory,
// and pgBackRest reaches it through a unix socket in its Dir. Without an
// archive it has no socket at all (never the shared /var/run/postgresql).
func (n *PatroniNode) localParameters() map[string]any {
	a := n.cluster.Archive
	if a == nil {
		return map[string]any{"unix_socket_directories": ""}
	}
	return map[string]any{"unix_socket_directories": n.Dir, "archive_command": a.archiveCommand(n.data())}
}

// archiveHosts makes every node a host of the cluster's repository.
func (pc *Patroni) archiveHosts() {
	hosts := make([]pgHost, len(pc.Nodes))
	for i, n := range pc.Nodes {
		hosts[i] = pgHost{n.data(), n.Port, n.Dir}
	}
	pc.Archive.hosts = hosts
}

func (n *PatroniNode) restoreScript() string { return filepath.Join(n.Dir, "restore.sh") }

// recoveryBootstrap sets, in a node's bootstrap section, the custom
// method that restores the cluster to pc's recovery target: the script
// runs pgbackrest restore into the empty data directory, and Patroni
// then starts PostgreSQL with recovery_conf, which replays the archived
// WAL up to the target and promotes (Patroni drops the settings that
// pgbackrest restore wrote into postgresql.auto.conf, since
// keep_existing_recovery_conf is false). No post_bootstrap: the roles and
// the database are in the backup.
func (n *PatroniNode) recoveryBootstrap(bootstrap map[string]any) {
	a, target := n.cluster.Archive, FormatTarget(n.cluster.recoverTo)
	bootstrap["method"] = archiveMethod
	bootstrap[archiveMethod] = map[string]any{
		"command":                     n.restoreScript(),
		"no_params":                   true,
		"keep_existing_recovery_conf": false,
		"recovery_conf": map[string]any{
			"restore_command":          a.restoreCommand(n.data()),
			"recovery_target_time":     target,
			"recovery_target_action":   "promote",
			"recovery_target_timeline": "latest",
		},
	}
	delete(bootstrap, "post_bootstrap")
}

// writeRestoreScript writes the script of the custom bootstrap method:
// pgbackrest restore of the newest backup that ended before the target,
// with the WAL it needs to be consistent (the recovery settings it writes
// are Patroni's to replace).
func (n *PatroniNode) writeRestoreScript(acct account) error {
	a := n.cluster.Archive
	script := fmt.Sprintf(`#!/bin/sh
# Patroni's custom bootstrap (engine.Patroni.Restore): this node's data directory
# restored from pgBackRest as of %[1]s; Patroni replays the WAL to it.
set -e
mkdir -p -m 0700 %[2]s
exec pgbackrest --config=%[3]s --stanza=%[4]s --pg1-path=%[2]s --type=time '--target=%[1]s' --target-action=promote restore
`, FormatTarget(n.cluster.recoverTo), n.data(), a.ConfPath(), a.stanza())
	if err := acct.writeFile(n.restoreScript(), script); err != nil {
		return err
	}
	return os.Chmod(n.restoreScript(), 0o755)
}

// Restore brings the cluster back to target, Patroni's way. Every node's
// Patroni stops (the standbys first, so that none is promoted meanwhile),
// the cluster is removed from the DCS (patronictl remove), every data
// directory is moved aside, and each node's configuration gets a custom
// bootstrap method that restores the repository's newest backup before
// target. The first node then bootstraps the cluster anew: it replays the
// archived WAL up to target and promotes a new timeline, which archives
// into the same stanza; the others start once it is the primary, and
// Patroni copies them from it (pg_basebackup). Restore returns once a
// primary answers, with the directories moved aside for the caller to
// remove once the restore is judged good (Aside); Synchronous tells when the
// standby has caught up. The nodes' configurations are then written back
// without the method (it only matters to a cluster that is not
// initialized); after a failure they keep it, so that a Patroni started
// again retries the restore rather than make an empty cluster.
//
// Every transaction committed up to target must be archived first: the
// Archive's Check does it while a primary still runs.
func (pc *Patroni) Restore(ctx context.Context, sup *supervisor.Supervisor, target time.Time) (res PatroniRestore, err error) {
	if pc.Archive == nil {
		return res, fmt.Errorf("patroni %s: no Archive to restore from", pc.Scope)
	}
	primary, _ := pc.Primary(ctx)
	order := slices.Clone(pc.Nodes)
	slices.SortStableFunc(order, func(a, b *PatroniNode) int {
		return boolInt(a == primary) - boolInt(b == primary)
	})
	for _, n := range order {
		if err := sup.Stop(ctx, n.Name); err != nil {
			return res, err
		}
	}
	if err := pc.removeFromDCS(ctx); err != nil {
		return res, err
	}
	res.Stopped = time.Now()
	for _, n := range pc.Nodes {
		dir, err := moveAside(n.data())
		if err != nil {
			return res, err
		}
		if dir != "" {
			res.Aside = append(res.Aside, dir)
		}
	}
	// Once the cluster is restored, the configurations are written back
	// without the method. Not after a failure: a Patroni that supervisord
	// starts again would then bootstrap an empty cluster (initdb) where
	// the restore should be retried.
	pc.recoverTo = target
	defer func() {
		pc.recoverTo = time.Time{}
		if err != nil {
			return
		}
		for _, n := range pc.Nodes {
			err = errors.Join(err, n.Init(ctx))
		}
	}()
	for _, n := range pc.Nodes {
		if err := n.Init(ctx); err != nil {
			return res, err
		}
	}
	for i, n := range pc.Nodes {
		if err := sup.Start(ctx, n.Name, false); err != nil {
			return res, err
		}
		if i == 0 {
			if err := pc.waitRestored(ctx, n); err != nil {
				return res, err
			}
			res.Primary = time.Now()
		}
	}
	return res, nil
}

// PatroniRestore is what Restore did.
type PatroniRestore struct {
	// Aside are the data directories moved aside.
	Aside []string
	// Stopped is when every node was stopped and the cluster removed from
	// the DCS; Primary when the first node answered as the primary (its
	// restore, replay and promotion done).
	Stopped, Primary time.Time
}

// removeFromDCS removes the cluster's keys from etcd (patronictl remove,
// answering its questions); every Patroni must be stopped. While the
// leader key of a node that was lost (killed, not stopped) has not
// expired, patronictl also asks for the leader's name: each node's is
// tried in turn.
func (pc *Patroni) removeFromDCS(ctx context.Context) error {
	acct, err := systemUser("postgres")
	if err != nil {
		return err
	}
	var errs []error
	for _, leader := range pc.Nodes {
		cmd := exec.CommandContext(ctx, "patronictl", "-c", pc.Nodes[0].configFile(), "remove", pc.Scope)
		cmd.Dir = pc.Nodes[0].Dir
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(acct.uid), Gid: uint32(acct.gid)}}
		cmd.Stdin = strings.NewReader(pc.Scope + "\nYes I am aware\n" + leader.Name + "\n")
		out, err := cmd.CombinedOutput()
		if err == nil {
			return nil
		}
		errs = append(errs, fmt.Errorf("%w: %s", err, strings.TrimSpace(string(out))))
	}
	return fmt.Errorf("patronictl remove %s: %w", pc.Scope, errors.Join(errs...))
}

// waitRestored waits until n is the primary again (the restore, the
// replay and the promotion done), or its Patroni gives up.
func (pc *Patroni) waitRestored(ctx context.Context, n *PatroniNode) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	for {
		if err := n.writable(ctx); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("patroni %s: %s not the primary after the restore (see %s): %w", pc.Scope, n.Name, n.Program().Log, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
