package native

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// The key is the content of go.mod and go.sum: not their times, and
// another go.sum (another Jaeger release) is another key.
func TestJaegerKey(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("go.mod", "module m\n")
	write("go.sum", "a v1.0.0 h1:x=\n")
	k1, err := jaegerKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(filepath.Join(dir, "go.sum"), old, old); err != nil {
		t.Fatal(err)
	}
	if k, _ := jaegerKey(dir); k != k1 {
		t.Errorf("key changed with go.sum's time: %s, then %s", k1, k)
	}
	write("go.sum", "a v1.0.1 h1:y=\n")
	if k, _ := jaegerKey(dir); k == k1 || len(k) != 16 {
		t.Errorf("go.sum changed, key %s then %s", k1, k)
	}
	write("go.mod", "module m\n\nrequire a v1.0.1\n")
	if k, _ := jaegerKey(dir); k == k1 {
		t.Errorf("go.mod changed, key stayed %s", k)
	}
	if _, err := jaegerKey(t.TempDir()); err == nil {
		t.Error("no go.mod: no error")
	}
}

// Of checkouts that need the build at once, one builds and the others
// wait for it and reuse it; later ones find it and do not build.
func TestEnsureCachedBuildsOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cache", "jaeger-k")
	var builds atomic.Int32
	build := func(tmp string) error {
		builds.Add(1)
		time.Sleep(1500 * time.Millisecond) // the others meet the lock
		return os.WriteFile(tmp, []byte("jaeger"), 0o755)
	}
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Go(func() { errs[i] = ensureCached(t.Context(), path, io.Discard, build) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("checkout %d: %v", i, err)
		}
	}
	if n := builds.Load(); n != 1 {
		t.Errorf("%d builds, want 1", n)
	}
	if b, err := os.ReadFile(path); err != nil || string(b) != "jaeger" {
		t.Errorf("cache %q %v", b, err)
	}
	if err := ensureCached(t.Context(), path, io.Discard, build); err != nil || builds.Load() != 1 {
		t.Errorf("a made build was built again (%d builds, %v)", builds.Load(), err)
	}
	if _, err := os.Stat(path + ".tmp"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("temporary file left: %v", err)
	}
}

// A failed build leaves nothing in the cache; a waiter gives up with its
// context and does not build under another's lock.
func TestEnsureCachedFailureAndWait(t *testing.T) {
	path := filepath.Join(t.TempDir(), "jaeger-k")
	failed := errors.New("no proxy")
	err := ensureCached(t.Context(), path, io.Discard, func(tmp string) error {
		_ = os.WriteFile(tmp, []byte("half"), 0o755)
		return failed
	})
	if !errors.Is(err, failed) || isFile(path) || isFile(path+".tmp") {
		t.Fatalf("failed build: err %v, cache made %v, tmp left %v", err, isFile(path), isFile(path+".tmp"))
	}
	f, err := os.OpenFile(path+".lock", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 1500*time.Millisecond)
	defer cancel()
	built := false
	err = ensureCached(ctx, path, io.Discard, func(string) error { built = true; return nil })
	if !errors.Is(err, context.DeadlineExceeded) || built {
		t.Errorf("lock held elsewhere: err %v, built %v", err, built)
	}
}

// BuildJaeger hard-links bin/jaeger to the shared build without building
// when the cache has it, and a second call changes nothing.
func TestBuildJaegerLinksTheSharedBuild(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	s, err := Load("../..", []string{"KV_STACK_DIR=" + t.TempDir(), "GO=/bin/false"}) // building fails
	if err != nil {
		t.Fatal(err)
	}
	s.BinDir = t.TempDir()
	if err := BuildJaeger(t.Context(), s, io.Discard); err == nil {
		t.Fatal("empty cache, GO=/bin/false: BuildJaeger did not build")
	}
	key, err := jaegerKey(filepath.Join(s.Root, "tools", "jaeger"))
	if err != nil {
		t.Fatal(err)
	}
	cached := filepath.Join(os.Getenv("XDG_CACHE_HOME"), "kvstack", "jaeger-"+key)
	if err := os.WriteFile(cached, []byte("jaeger"), 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(s.BinDir, "jaeger")
	// A checkout's symbolic link from before, which KV_PROCESS_USER could
	// not follow through root's home: replaced.
	if err := os.Symlink(cached, bin); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := BuildJaeger(t.Context(), s, io.Discard); err != nil {
			t.Fatal(err)
		}
		if !sameFile(bin, cached) {
			fi, err := os.Lstat(bin)
			t.Fatalf("bin/jaeger is %v (%v), want a hard link to %s", fi, err, cached)
		}
	}
	// The test binary is no Jaeger build: never adopted into the cache.
	self, _ := os.Executable()
	if adoptable(self, filepath.Join(s.Root, "tools", "jaeger")) {
		t.Error("the test binary adopted as Jaeger")
	}
}

// The background build runs once per stack: a second start while it runs
// finds it, and it is seen to run until it exits.
func TestStartJaegerBuild(t *testing.T) {
	s, err := Load("../..", []string{"KV_STACK_DIR=" + t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if pid := JaegerBuilding(s); pid != 0 {
		t.Fatalf("nothing started, building pid %d", pid)
	}
	exe := filepath.Join(t.TempDir(), "stack")
	script := "#!/bin/sh\necho \"$@\" >> " + filepath.Join(t.TempDir(), "calls") + "\nsleep 2\n"
	if err := os.WriteFile(exe, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	pid, log, err := StartJaegerBuild(s, exe)
	if err != nil || pid == 0 || log != s.LogFile("jaeger-build") {
		t.Fatalf("StartJaegerBuild: pid %d, log %s, %v", pid, log, err)
	}
	if again, _, err := StartJaegerBuild(s, exe); err != nil || again != pid {
		t.Errorf("second start: pid %d (first %d), %v", again, pid, err)
	}
	if got := JaegerBuilding(s); got != pid {
		t.Errorf("building pid %d, want %d", got, pid)
	}
	deadline := time.Now().Add(10 * time.Second)
	for JaegerBuilding(s) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the build still seen running 10 s after its 2 s")
		}
		time.Sleep(100 * time.Millisecond)
	}
}
