package app

import (
	"os"
	"runtime/debug"
)

// GC settings of the API and the consumer, unless GOGC / GOMEMLIMIT say
// otherwise.
//
// Their live heaps are small (a few MiB: requests and batches in flight),
// and at Go's default GOGC=100 the collector ran every few milliseconds
// under load: lab/bench/profiles/ shows GC marking and allocation at ~28% of
// the consumer's CPU while it drains a backlog, and ~15% of the API's on
// cache hits. GOGC=400 lets the heap grow to five times the live data
// between cycles, a fraction of the collections for a few more MiB; the
// soft limit keeps the process well under the 100 MiB RSS budget of issue 7
// by making the collector run sooner whenever the heap approaches it.
const (
	gcPercent   = 400
	memoryLimit = 64 << 20
)

func tuneGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(memoryLimit)
	}
}
