package native

import (
	"context"
	"crypto/sha256"
	"debug/buildinfo"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/kvstack/kvstack/internal/supervisor"
)

// Binaries are the Go programs of cmd/ the stack runs (migrate before the
// others).
var Binaries = []string{"api", "consumer", "migrate"}

// Build compiles the stack's Go binaries into s.BinDir. go build leaves a
// binary that is up to date untouched, so a process running it is not
// seen as rebuilt.
func Build(ctx context.Context, s *Settings, log io.Writer) error {
	args := []string{"build", "-o", s.BinDir + "/"}
	for _, b := range Binaries {
		args = append(args, "./cmd/"+b)
	}
	fmt.Fprintf(log, "==> build: %s\n", strings.Join(Binaries, " "))
	cmd := exec.CommandContext(ctx, s.Get("GO"), args...)
	cmd.Dir, cmd.Stdout, cmd.Stderr = s.Root, log, log
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go %s: %w", strings.Join(args, " "), err)
	}
	return nil
}

// BuildJaeger makes bin/jaeger a hard link to the machine's one Jaeger
// build for tools/jaeger (a module of its own): JaegerCache's
// jaeger-<key>, key the hash of that module's go.mod and go.sum. Every
// checkout of the machine shares it; the first to need it builds it from
// the Go module proxy under a lock, and the others wait for that build and
// reuse it. A hard link, not a symbolic one: Jaeger runs as
// KV_PROCESS_USER, who cannot pass through root's 0700 home to the
// cache (a copy where the cache is on another file system). Skipped when
// bin/jaeger already is the current build.
func BuildJaeger(ctx context.Context, s *Settings, log io.Writer) error {
	dir := filepath.Join(s.Root, "tools", "jaeger")
	bin := filepath.Join(s.BinDir, "jaeger")
	key, err := jaegerKey(dir)
	if err != nil {
		return err
	}
	cached := filepath.Join(JaegerCache(), "jaeger-"+key)
	if sameFile(bin, cached) {
		return nil
	}
	err = ensureCached(ctx, cached, log, func(tmp string) error {
		if adoptable(bin, dir) {
			fmt.Fprintf(log, "==> jaeger: %s is the build of tools/jaeger; copied to %s\n", bin, cached)
			return copyFile(bin, tmp)
		}
		fmt.Fprintf(log, "==> jaeger: building Jaeger from the Go module proxy into %s, shared by every checkout (first time: 7 min on a quiet 2-core machine, up to 16 on a busy one)…\n", cached)
		started := time.Now()
		cmd := exec.CommandContext(ctx, s.Get("GO"), "build", "-o", tmp, "github.com/jaegertracing/jaeger/cmd/jaeger")
		cmd.Dir, cmd.Stdout, cmd.Stderr = dir, log, log
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("jaeger: build failed (cd tools/jaeger && go build github.com/jaegertracing/jaeger/cmd/jaeger): %w", err)
		}
		fmt.Fprintf(log, "==> jaeger: built %s in %s\n", cached, time.Since(started).Round(time.Second))
		return nil
	})
	if err != nil {
		return err
	}
	if err := os.MkdirAll(s.BinDir, 0o755); err != nil {
		return err
	}
	// A new link renamed over bin/jaeger: a running Jaeger keeps its file.
	_ = os.Remove(bin + ".link")
	if err := os.Link(cached, bin+".link"); err != nil {
		if err := copyFile(cached, bin+".link"); err != nil {
			return err
		}
	}
	return os.Rename(bin+".link", bin)
}

// sameFile says bin is the regular file cached (a hard link to it; a
// copy is made again).
func sameFile(bin, cached string) bool {
	b, err := os.Lstat(bin)
	if err != nil || !b.Mode().IsRegular() {
		return false
	}
	c, err := os.Stat(cached)
	if err != nil || !c.Mode().IsRegular() {
		return false
	}
	return os.SameFile(b, c)
}

// JaegerCache is the machine-wide directory of the shared Jaeger builds:
// the user's cache directory (XDG_CACHE_HOME, else ~/.cache) /kvstack.
func JaegerCache() string {
	dir, err := os.UserCacheDir()
	if err != nil {
		dir = os.TempDir()
	}
	return filepath.Join(dir, "kvstack")
}

// jaegerKey is the shared build's key for the module in dir: the first 16
// hex digits of the SHA-256 of its go.mod and go.sum, so that a change of
// either (another Jaeger release) is another build, and a checkout's file
// times do not matter.
func jaegerKey(dir string) (string, error) {
	h := sha256.New()
	for _, name := range []string{"go.mod", "go.sum"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return "", fmt.Errorf("jaeger: %w", err)
		}
		fmt.Fprintf(h, "%s %d\n", name, len(b))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

// ensureCached makes path with build (into a temporary file, then renamed)
// unless it exists, holding path.lock meanwhile: of two checkouts that need
// it at once, one builds and the other waits, then finds it made.
func ensureCached(ctx context.Context, path string, log io.Writer, build func(tmp string) error) error {
	if isFile(path) {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(path+".lock", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return err
	}
	defer f.Close() // releases the lock
	for said := false; ; said = true {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			return fmt.Errorf("jaeger: lock %s: %w", f.Name(), err)
		}
		if !said {
			fmt.Fprintf(log, "==> jaeger: another checkout is building %s (lock %s); waiting for it\n", path, f.Name())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
	if isFile(path) { // made while this waited
		return nil
	}
	tmp := path + ".tmp"
	_ = os.Remove(tmp)
	if err := build(tmp); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, path)
}

// adoptable reports whether bin (a checkout's bin/jaeger from before the
// shared build) is a build of the module in dir: Jaeger's command, and
// every module it was built from at the version and hash of dir's go.sum.
func adoptable(bin, dir string) bool {
	if fi, err := os.Lstat(bin); err != nil || !fi.Mode().IsRegular() {
		return false
	}
	info, err := buildinfo.ReadFile(bin)
	if err != nil || info.Path != "github.com/jaegertracing/jaeger/cmd/jaeger" {
		return false
	}
	sum, err := os.ReadFile(filepath.Join(dir, "go.sum"))
	if err != nil {
		return false
	}
	lines := map[string]bool{}
	for _, l := range strings.Split(string(sum), "\n") {
		lines[strings.TrimSpace(l)] = true
	}
	mods := append([]*debug.Module{&info.Main}, info.Deps...)
	for _, m := range mods {
		if m.Replace != nil || m.Sum == "" || !lines[m.Path+" "+m.Version+" "+m.Sum] {
			return false
		}
	}
	return len(info.Deps) > 0
}

func isFile(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular()
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// Migrate applies the migrations with the stack's DATABASE_URL and
// RABBITMQ_URL (cmd/migrate: the schema, then the queues' type); its output
// goes to logs/migrate.log.
func Migrate(ctx context.Context, s *Settings, log io.Writer) error {
	logFile := s.LogFile("migrate")
	if err := os.MkdirAll(filepath.Dir(logFile), 0o755); err != nil {
		return err
	}
	out, err := os.OpenFile(logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer out.Close()
	fmt.Fprintf(log, "==> migrate: %s (log %s)\n", filepath.Join(s.BinDir, "migrate"), logFile)
	cmd := exec.CommandContext(ctx, filepath.Join(s.BinDir, "migrate"))
	// The stack's DATABASE_URL (the owner's) and RABBITMQ_URL (its queues
	// are migrated too), the roles to grant, and what the caller set for
	// kvstack.
	cmd.Env = os.Environ()
	for name, value := range s.migrateEnv() {
		cmd.Env = append(cmd.Env, name+"="+value)
	}
	cmd.Dir, cmd.Stdout, cmd.Stderr = s.Root, out, out
	if err := cmd.Run(); err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) && exit.ExitCode() == 3 { // cmd/migrate's ExitQueueInUse
			err = fmt.Errorf("%w (%w)", ErrQueueInUse, err)
		}
		return fmt.Errorf("migrations failed: %w%s", err, supervisor.Tail(logFile))
	}
	return nil
}

// ErrQueueInUse is Migrate's failure when a queue must change type
// (RABBITMQ_QUEUE_TYPE) but has consumers: stop them, migrate again.
var ErrQueueInUse = errors.New("a queue to convert has consumers")

// NewStack is the native topology of s, run by a supervisord in s.Dir.
func NewStack(s *Settings, log io.Writer, programs ...supervisor.Program) *supervisor.Stack {
	if programs == nil {
		programs = Processes(s)
	}
	return &supervisor.Stack{Dir: s.Dir, Programs: programs, StartTimeout: s.StartTimeout, Log: log}
}

// JaegerBuilt reports whether the machine's shared Jaeger build for this
// checkout's tools/jaeger exists: BuildJaeger then only links it.
func JaegerBuilt(s *Settings) bool {
	key, err := jaegerKey(filepath.Join(s.Root, "tools", "jaeger"))
	return err == nil && isFile(filepath.Join(JaegerCache(), "jaeger-"+key))
}

// jaegerBuildPid is where the stack's background Jaeger build (StartJaegerBuild) keeps its pid.
func jaegerBuildPid(s *Settings) string { return filepath.Join(s.Dir, "jaeger-build.pid") }

// JaegerBuilding returns the pid of the stack's background Jaeger build,
// or 0 when none runs.
func JaegerBuilding(s *Settings) int {
	b, err := os.ReadFile(jaegerBuildPid(s))
	if err != nil {
		return 0
	}
	var pid int
	if _, err := fmt.Sscan(string(b), &pid); err != nil || pid <= 0 || syscall.Kill(pid, 0) != nil {
		return 0
	}
	return pid
}

// StartJaegerBuild runs `stack jaeger-up` (exe) in the background, in a
// session of its own so that it outlives `make up`: it builds the shared
// Jaeger (or waits for another checkout's build), then starts the stack's
// jaeger. Its output goes to logs/jaeger-build.log. Nothing is started
// when one already runs.
func StartJaegerBuild(s *Settings, exe string) (pid int, log string, err error) {
	log = s.LogFile("jaeger-build")
	if pid := JaegerBuilding(s); pid != 0 {
		return pid, log, nil
	}
	if err := os.MkdirAll(filepath.Dir(log), 0o755); err != nil {
		return 0, log, err
	}
	out, err := os.OpenFile(log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return 0, log, err
	}
	defer out.Close()
	cmd := exec.Command(exe, "jaeger-up")
	cmd.Dir, cmd.Stdout, cmd.Stderr = s.Root, out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return 0, log, err
	}
	pid = cmd.Process.Pid
	// Reaped when it ends while this process still runs (make run); after
	// up returns, init is its parent.
	go func() { _ = cmd.Wait() }()
	return pid, log, os.WriteFile(jaegerBuildPid(s), []byte(fmt.Sprintln(pid)), 0o644)
}

// JaegerBuildDone removes the background build's pid file when it is this
// process's.
func JaegerBuildDone(s *Settings) {
	b, err := os.ReadFile(jaegerBuildPid(s))
	if err == nil && strings.TrimSpace(string(b)) == fmt.Sprint(os.Getpid()) {
		_ = os.Remove(jaegerBuildPid(s))
	}
}
