package native

import (
	"fmt"
	"os"
	"path/filepath"
)

// reachable lets every user pass through the stack's directory (o+x,
// g+x), not list it: the stack's first command makes it 0700 (it holds the
// message key and the engines' passwords, each 0600), and the API
// replicas, the consumers and the exporters (KV_PROCESS_USER) and the
// stack's own engines (their users) read files in it and in the
// repository. It fails, naming the directory, when a directory above the
// binaries or the stack's directory is closed to others: the processes
// would not start (supervisord's SPAWN_ERROR).
func reachable(s *Settings) error {
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return err
	}
	fi, err := os.Stat(s.Dir)
	if err != nil {
		return err
	}
	if mode := fi.Mode().Perm(); mode&0o011 != 0o011 {
		if err := os.Chmod(s.Dir, mode|0o011); err != nil {
			return err
		}
	}
	if os.Geteuid() != 0 || s.ProcessUser() == "" {
		return nil
	}
	for _, start := range []string{s.BinDir, filepath.Dir(s.Dir), s.Root} {
		for dir := start; ; dir = filepath.Dir(dir) {
			if fi, err := os.Stat(dir); err == nil && fi.Mode().Perm()&0o001 == 0 {
				return fmt.Errorf("%s is closed to other users (mode %v): the stack's processes run as %s (KV_PROCESS_USER) and cannot reach %s; "+
					"chmod o+x %s, or set KV_PROCESS_USER=root", dir, fi.Mode().Perm(), s.ProcessUser(), start, dir)
			}
			if dir == filepath.Dir(dir) {
				break
			}
		}
	}
	return nil
}
