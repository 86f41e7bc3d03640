package engine_test

import (
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"

	"github.com/kvstack/kvstack/internal/engine"
)

// FreePorts never hands out a port twice, nor one that is another's Redis
// Cluster bus (port+10000), so that tests may start engines at once; and
// another process asking for ports meanwhile sees each one taken. Before
// the reservation, the kernel's choice alone gave the same ports again
// within a few hundred calls.
func TestFreePortsNeverTwice(t *testing.T) {
	t.Parallel()
	seen := map[int]bool{}
	for range 300 {
		ports, err := engine.FreePorts(1)
		if err != nil {
			t.Fatal(err)
		}
		p := ports[0]
		if seen[p] || seen[p+10000] || seen[p-10000] {
			t.Fatalf("port %d handed out again, or its bus port's", p)
		}
		seen[p] = true
	}
	for p := range seen {
		f, err := os.Open(filepath.Join(engine.PortLockDir, strconv.Itoa(p)))
		if err != nil {
			t.Fatalf("port %d has no lock file: %v", p, err)
		}
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		f.Close()
		if err == nil {
			t.Fatalf("port %d: another process could take its lock", p)
		}
	}
}
