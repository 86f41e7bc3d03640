package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/prometheus/procfs"
)

// machineLock is the campaign lock of the machine, not of a checkout: the
// private ports and the engines' directories (/tmp/kvchaos,
// /tmp/kvchaos-ha) are the machine's. A lock under the checkout's tmp/ let
// a campaign of another worktree start on the same ports, remove a running
// campaign's engines and fail all its later faults.
const machineLock = "/tmp/kvstack-chaos.lock"

// lock takes the machine's campaign lock (one campaign at a time: the
// private ports are fixed), waiting up to 30 min for another one to end.
func lock(ctx context.Context, path string) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(30 * time.Minute)
	for said := false; ; said = true {
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err == nil {
			return func() { f.Close() }, nil
		}
		if !said {
			fmt.Fprintf(os.Stderr, "==> chaos: another campaign runs (lock %s); waiting\n", path)
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			f.Close()
			return nil, fmt.Errorf("another campaign still holds %s", path)
		}
		sleepCtx(ctx, time.Second)
	}
}

// waitNoBench waits while a benchmark (kvbench) runs: the two would
// disturb each other's figures.
func waitNoBench(ctx context.Context) error {
	deadline := time.Now().Add(30 * time.Minute)
	for said := false; ; said = true {
		pid := benchPid()
		if pid == 0 {
			return nil
		}
		if !said {
			fmt.Fprintf(os.Stderr, "==> chaos: a benchmark is running (pid %d); waiting\n", pid)
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("a benchmark (kvbench, pid %d) still runs", pid)
		}
		sleepCtx(ctx, 10*time.Second)
	}
}

// benchPid is the pid of a running kvbench, or 0.
func benchPid() int {
	procs, _ := procfs.AllProcs()
	for _, p := range procs {
		if argv, err := p.CmdLine(); err == nil && len(argv) > 0 && filepath.Base(argv[0]) == "kvbench" {
			return p.PID
		}
	}
	return 0
}
