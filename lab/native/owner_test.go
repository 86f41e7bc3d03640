package native

import (
	"io"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
)

// Every process of either topology runs as ProcessUser (supervisord's
// user=), nginx, Prometheus, Alertmanager and Jaeger among them.
func TestProcessesRunAsProcessUser(t *testing.T) {
	base := openTempDir(t)
	for _, topology := range []string{"single", "ha"} {
		s, err := Load("../..", []string{"KV_STACK_DIR=" + filepath.Join(base, topology), "KV_TOPOLOGY=" + topology})
		if err != nil {
			t.Fatal(err)
		}
		want := s.Get("KV_PROCESS_USER")
		for _, p := range Processes(s) {
			if p.User != want {
				t.Errorf("%s: %s runs as %q, want %q (KV_PROCESS_USER)", topology, p.Name, p.User, want)
			}
		}
	}
}

// As root, the stack gives ProcessUser the files its processes write:
// nginx's prefix, Prometheus' and Alertmanager's storage (with what a
// stack that ran them as root left there), nginx's access log and the
// edge's key; and root again when KV_PROCESS_USER=root.
func TestOwnFiles(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("only root gives files away; the stack runs every process as its caller otherwise")
	}
	base := openTempDir(t)
	s, err := Load("../..", []string{"KV_STACK_DIR=" + filepath.Join(base, ".stack")})
	if err != nil {
		t.Fatal(err)
	}
	if err := reachable(s, io.Discard); err != nil {
		t.Fatal(err)
	}
	if _, err := EdgeCerts(s); err != nil {
		t.Fatal(err)
	}
	old := filepath.Join(s.Dir, "prometheus", "wal", "00000001") // a root-run Prometheus' data
	for _, d := range []string{"logs", "nginx", "alertmanager", "prometheus/wal"} {
		if err := os.MkdirAll(filepath.Join(s.Dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(old, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	uid, _, err := processIDs(s)
	if err != nil || uid == 0 {
		t.Fatalf("KV_PROCESS_USER: uid %d, %v", uid, err)
	}
	paths := []string{filepath.Join(s.Dir, "nginx"), filepath.Join(s.Dir, "alertmanager"), filepath.Join(s.Dir, "prometheus"), old,
		s.Get("NGINX_ACCESS_LOG"), s.Get("NGINX_TLS_KEY")}
	owned := func(want int) {
		t.Helper()
		if err := ownFiles(s); err != nil {
			t.Fatal(err)
		}
		for _, p := range paths {
			fi, err := os.Stat(p)
			if err != nil {
				t.Errorf("%s: %v", p, err)
				continue
			}
			if got := fi.Sys().(*syscall.Stat_t).Uid; int(got) != want {
				t.Errorf("%s owned by uid %d, want %d", p, got, want)
			}
		}
	}
	owned(uid)
	if fi, err := os.Stat(s.Get("NGINX_TLS_KEY")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("the edge's key: %v, %v; want mode 0600", fi.Mode(), err)
	}
	if s, err = Load("../..", []string{"KV_STACK_DIR=" + filepath.Join(base, ".stack"), "KV_PROCESS_USER=root"}); err != nil {
		t.Fatal(err)
	}
	if s.ProcessUser() != "" {
		t.Fatalf("ProcessUser %q with KV_PROCESS_USER=root, want root", s.ProcessUser())
	}
	owned(0)
	t.Logf("KV_PROCESS_USER %s is uid %s", s.Get("KV_PROCESS_USER"), strconv.Itoa(uid))
}

// openTempDir is a temporary directory that other users may pass through.
func openTempDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "kvstack-own-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}
