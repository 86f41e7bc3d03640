package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// pgBackRest lets one command at a time work on a stanza's repository:
// backup and expire take the stanza's backup lock, stanza-create both
// its archive and its backup locks, each an flock on a file in lock-path
// (Dir/lock/STANZA-backup.lock) that names the holder's pid. A command
// that finds the lock taken does not wait (pgBackRest has no option for
// that): it fails at once with exit code 50 (LockAcquireError, "is
// another pgBackRest process running?"). So make backup during a
// scheduled backup, or the scheduler's backup during make backup, would
// fail; WhenFree waits for the holder instead. (pgbackrest info tests the
// backup lock by taking it for an instant: a command starting in that
// instant fails the same way, and WhenFree runs it again.)

// lockAcquireExit is pgBackRest's exit code for LockAcquireError.
const lockAcquireExit = 50

// LockHolder is the process that holds a stanza's pgBackRest lock, as its
// lock file and /proc name it (zero when it had ended by then).
type LockHolder struct {
	PID       int
	Command   string // its command line, when it still runs
	ParentPID int
	Parent    string // the command line of the process that started it
}

func (h LockHolder) String() string {
	if h.PID == 0 {
		return "a pgBackRest command that has ended since"
	}
	s := fmt.Sprintf("pid %d", h.PID)
	if h.Command != "" {
		s = fmt.Sprintf("%s (pid %d)", h.Command, h.PID)
	}
	if h.Parent != "" {
		s += fmt.Sprintf(", started by %s (pid %d)", h.Parent, h.ParentPID)
	}
	return s
}

// LockedError is a pgBackRest command that failed because another one
// held the stanza's lock.
type LockedError struct {
	Holder LockHolder
	Err    error // pgBackRest's own error
}

func (e *LockedError) Error() string {
	return fmt.Sprintf("the stanza's pgBackRest lock is held by %s: %v", e.Holder, e.Err)
}

func (e *LockedError) Unwrap() error { return e.Err }

// IsLocked says whether err is pgBackRest failing on its lock.
func IsLocked(err error) (*LockedError, bool) {
	var l *LockedError
	ok := errors.As(err, &l)
	return l, ok
}

// LockPath is pgBackRest's lock-path.
func (b *PgBackRest) LockPath() string { return filepath.Join(b.Dir, "lock") }

// Holder is the process that holds the stanza's backup lock, else its
// archive lock (ok false when neither file names a process that runs).
// It reads the lock files and never takes the lock itself.
func (b *PgBackRest) Holder() (h LockHolder, ok bool) {
	for _, kind := range []string{"backup", "archive"} {
		pid := lockFilePID(filepath.Join(b.LockPath(), b.stanza()+"-"+kind+".lock"))
		if pid <= 0 {
			continue
		}
		cmd, ppid := procInfo(pid)
		if cmd == "" {
			continue // ended (pgBackRest removes its lock file as it ends)
		}
		h = LockHolder{PID: pid, Command: cmd, ParentPID: ppid}
		if ppid > 1 {
			h.Parent, _ = procInfo(ppid)
		}
		return h, true
	}
	return LockHolder{}, false
}

// lockFilePID reads the pid in a pgBackRest lock file: "PID\nEXEC-ID\n",
// or JSON with a pid in later releases; 0 when none.
func lockFilePID(path string) int {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	data = bytes.TrimSpace(data)
	if bytes.HasPrefix(data, []byte("{")) {
		var v struct {
			PID int `json:"pid"`
		}
		_ = json.Unmarshal(data, &v)
		return v.PID
	}
	line, _, _ := bytes.Cut(data, []byte("\n"))
	pid, _ := strconv.Atoi(string(bytes.TrimSpace(line)))
	return pid
}

// procInfo is a process' command line and parent pid ("" when it does
// not run).
func procInfo(pid int) (cmd string, ppid int) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || len(raw) == 0 {
		return "", 0
	}
	cmd = strings.TrimSpace(strings.ReplaceAll(string(raw), "\x00", " "))
	if stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
		// pid (comm) state ppid …: comm may hold spaces and parentheses.
		if i := bytes.LastIndexByte(stat, ')'); i > 0 {
			if f := strings.Fields(string(stat[i+1:])); len(f) > 1 {
				ppid, _ = strconv.Atoi(f[1])
			}
		}
	}
	return cmd, ppid
}

// WhenFree runs fn (a pgBackRest command of this stanza) and, while it
// fails because another command holds the stanza's lock, runs it again
// every second for up to wait: waiting is called at the first such
// failure and whenever the holder changes. After wait (0: at the first
// failure), it returns the *LockedError. waited is how long it waited
// for the lock, up to the run of fn that found it free.
func (b *PgBackRest) WhenFree(ctx context.Context, wait time.Duration, waiting func(LockHolder), fn func(context.Context) error) (waited time.Duration, err error) {
	began := time.Now()
	deadline := began.Add(wait)
	var last LockHolder
	for first := true; ; first = false {
		tried := time.Now()
		err := fn(ctx)
		l, locked := IsLocked(err)
		if !locked {
			if !first {
				waited = tried.Sub(began)
			}
			return waited, err
		}
		if first || l.Holder.PID != last.PID && l.Holder.PID != 0 {
			last = l.Holder
			if waiting != nil && wait > 0 {
				waiting(l.Holder)
			}
		}
		if !time.Now().Before(deadline) {
			return time.Since(began), err
		}
		select {
		case <-ctx.Done():
			return time.Since(began), fmt.Errorf("%w (gave up waiting: %w)", err, ctx.Err())
		case <-time.After(time.Second):
		}
	}
}

// EnsureStanza creates the stanza unless the repository has it already,
// as pgbackrest info says (info does not fail while a backup runs: it only
// tests the backup lock, to report it). stanza-create takes both of the
// stanza's locks, so it fails while a backup runs, even when it would
// have nothing to do.
func (b *PgBackRest) EnsureStanza(ctx context.Context) error {
	if info, err := b.Info(ctx); err == nil && info.StanzaExists() {
		return nil
	}
	return b.CreateStanza(ctx)
}
