package native

import (
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// processIDs are the uid and gid of ProcessUser (root's when it is "").
func processIDs(s *Settings) (uid, gid int, err error) {
	name := s.ProcessUser()
	if name == "" {
		return 0, 0, nil
	}
	u, err := user.Lookup(name)
	if err != nil {
		return 0, 0, fmt.Errorf("KV_PROCESS_USER: %w (make setup and make up make it)", err)
	}
	uid, _ = strconv.Atoi(u.Uid)
	gid, _ = strconv.Atoi(u.Gid)
	return uid, gid, nil
}

// ownFiles gives ProcessUser what the topology's processes write, as
// root alone (otherwise every process runs as the caller): nginx's prefix
// (its pid and temp files), Prometheus' and Alertmanager's storage,
// nginx's log files, and the edge's TLS key when it is the stack's own
// (nginx's master reads it; mode 0600 stays). A stack that ran them as
// root before gets its files back, and so does root when
// KV_PROCESS_USER=root.
func ownFiles(s *Settings) error {
	if os.Geteuid() != 0 {
		return nil
	}
	uid, gid, err := processIDs(s)
	if err != nil {
		return err
	}
	for _, d := range []string{"nginx", "prometheus", "alertmanager"} {
		if err := chownTree(filepath.Join(s.Dir, d), uid, gid); err != nil {
			return err
		}
	}
	for _, v := range []string{"NGINX_ACCESS_LOG", "NGINX_ERROR_LOG"} {
		path := s.Get(v)
		if !filepath.IsAbs(path) || strings.HasPrefix(path, "/dev/") {
			continue // stderr, /dev/stderr
		}
		f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			return fmt.Errorf("%s: %w", v, err)
		}
		f.Close()
		if err := os.Chown(path, uid, gid); err != nil {
			return err
		}
	}
	if key := s.Get("NGINX_TLS_KEY"); filepath.Dir(key) == s.TLSDir() {
		if err := os.Chown(key, uid, gid); err != nil {
			return fmt.Errorf("the edge's key: %w", err)
		}
	}
	return nil
}

func chownTree(dir string, uid, gid int) error {
	return filepath.WalkDir(dir, func(path string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(path, uid, gid)
	})
}

// asProcessUser makes cmd run as ProcessUser when the caller is root (a
// check of a configuration as the process that reads it: nginx -t makes
// its temp directories, and must read the key, as that user).
func asProcessUser(s *Settings, cmd *exec.Cmd) error {
	if os.Geteuid() != 0 || s.ProcessUser() == "" {
		return nil
	}
	uid, gid, err := processIDs(s)
	if err != nil {
		return err
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
	return nil
}
