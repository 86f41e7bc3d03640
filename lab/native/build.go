package native

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
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

// BuildJaeger builds bin/jaeger from the Go module proxy (tools/jaeger, a
// module of its own) when it is missing or older than that module's go.sum.
func BuildJaeger(ctx context.Context, s *Settings, log io.Writer) error {
	dir := filepath.Join(s.Root, "tools", "jaeger")
	bin := filepath.Join(s.BinDir, "jaeger")
	if b, err := os.Stat(bin); err == nil {
		if sum, err := os.Stat(filepath.Join(dir, "go.sum")); err == nil && b.ModTime().After(sum.ModTime()) {
			return nil
		}
	}
	fmt.Fprintf(log, "==> jaeger: building Jaeger from the Go module proxy (first time: 7 min on a quiet 2-core machine, up to 16 on a busy one)…\n")
	started := time.Now()
	cmd := exec.CommandContext(ctx, s.Get("GO"), "build", "-o", bin+".tmp", "github.com/jaegertracing/jaeger/cmd/jaeger")
	cmd.Dir, cmd.Stdout, cmd.Stderr = dir, log, log
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("jaeger: build failed (cd tools/jaeger && go build github.com/jaegertracing/jaeger/cmd/jaeger): %w", err)
	}
	fmt.Fprintf(log, "==> jaeger: built %s in %s\n", bin, time.Since(started).Round(time.Second))
	return os.Rename(bin+".tmp", bin)
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
	return &supervisor.Stack{Dir: s.Dir, Programs: programs, StartTimeout: s.StartTimeout(), Log: log}
}
