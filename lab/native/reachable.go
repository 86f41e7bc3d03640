package native

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// reachable lets every user pass through the stack's directory (o+x,
// g+x), not list it: the stack's first command makes it 0700 (it holds the
// message key and the engines' passwords, each 0600), and the API
// replicas, the consumers, the exporters, nginx, Prometheus, Alertmanager
// and Jaeger (KV_PROCESS_USER) and the stack's own engines (their users)
// read files in it and in the repository. When a directory above the
// binaries, the stack's directory or the repository is closed to others (a
// home directory is 0700 on Debian 12, so is a mktemp -d), those processes
// cannot reach their files: the stack refuses to start, naming the
// directory, rather than run them as root. KV_PROCESS_USER=root runs them
// as root on purpose, and says so at every start (RootWarning).
func reachable(s *Settings, log io.Writer) error {
	if err := makeStackDir(s.Dir); err != nil {
		return err
	}
	if err := passable(s.Dir); err != nil {
		return err
	}
	if w := RootWarning(s); w != "" {
		fmt.Fprintf(log, "==> %s\n", w)
		return nil
	}
	if os.Geteuid() == 0 {
		if dir := closedAbove(s); dir != "" {
			return fmt.Errorf("%s is closed to other users, so %s (KV_PROCESS_USER) cannot reach the stack's files, "+
				"and the API replicas, the consumers, the exporters, nginx, Prometheus, Alertmanager and Jaeger would run as root: "+
				"chmod o+x %s, or move the checkout; KV_PROCESS_USER=root runs them as root on purpose", dir, s.Get("KV_PROCESS_USER"), dir)
		}
	}
	return nil
}

// passable lets every user pass through dir (o+x, g+x), not list it.
func passable(dir string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return err
	}
	if mode := fi.Mode().Perm(); mode&0o011 != 0o011 {
		return os.Chmod(dir, mode|0o011)
	}
	return nil
}

// makeStackDir makes the stack's directory 0700 when it does not exist;
// the directories it makes above it are open to pass through (0755 under
// the usual umask), or they would close it off themselves.
func makeStackDir(dir string) error {
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return err
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	return nil
}

// closedAbove is the first directory, from the binaries', the stack's
// directory's parent and the repository up to /, that other users cannot
// pass through ("" when there is none).
func closedAbove(s *Settings) string {
	for _, start := range []string{s.BinDir, filepath.Dir(s.Dir), s.Root} {
		for dir := start; ; dir = filepath.Dir(dir) {
			if fi, err := os.Stat(dir); err == nil && fi.Mode().Perm()&0o001 == 0 {
				return dir
			}
			if dir == filepath.Dir(dir) {
				break
			}
		}
	}
	return ""
}
