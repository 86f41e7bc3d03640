package engine

import (
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// BaseStartTimeout is how long a private engine gets to answer (Start, Add,
// a restarted node's WaitHealthy) and a Redis Cluster to form (Form) on a
// machine with a core to spare for each runnable process; StartTimeout
// stretches it by the machine's load.
const BaseStartTimeout = 2 * time.Minute

// MaxStartTimeout bounds StartTimeout's stretch: a node that has not
// answered in this long is broken, however loaded the machine.
const MaxStartTimeout = 10 * time.Minute

// StartTimeout is the bound of Start and Form, read at each call.
// START_TIMEOUT (seconds, as lab/scripts/services.sh reads it for the
// shared services), when set, is the bound. Otherwise it is
// BaseStartTimeout times the one-minute load average per core when that is
// above 1, at most MaxStartTimeout: a RabbitMQ node that boots in 15 s on
// a quiet 2-core machine took more than 2 minutes at load 25–45, with
// parallel tests and other work beside it, and failed the runs that a
// fixed 2-minute bound gave it.
func StartTimeout() time.Duration {
	if d, ok := startTimeoutSet(); ok {
		return d
	}
	return stretch(BaseStartTimeout, loadPerCore())
}

// startTimeoutSet is START_TIMEOUT's bound, when set.
func startTimeoutSet() (time.Duration, bool) {
	n, err := strconv.Atoi(os.Getenv("START_TIMEOUT"))
	if err != nil || n <= 0 {
		return 0, false
	}
	return time.Duration(n) * time.Second, true
}

// AllowForLoad is a test's bound d (set for a quiet machine) plus as much
// as its engines' start bound may exceed BaseStartTimeout: with
// START_TIMEOUT set, that bound's excess (never less than d); otherwise
// the most the load may stretch it, since engines started later in the
// test read a load that its parallel boots raise, and a test whose
// context ended before its engines' start bound would fail on a loaded
// machine.
func AllowForLoad(d time.Duration) time.Duration {
	if s, ok := startTimeoutSet(); ok {
		return d + max(0, s-BaseStartTimeout)
	}
	return d + MaxStartTimeout - BaseStartTimeout
}

// stretch is base times load when load is above 1, at most
// MaxStartTimeout (and never below base).
func stretch(base time.Duration, load float64) time.Duration {
	if load <= 1 {
		return base
	}
	d := time.Duration(float64(base) * load)
	return max(base, min(d, MaxStartTimeout))
}

// loadPerCore is /proc/loadavg's one-minute figure divided by the cores
// this process may use; 0 when unknown.
func loadPerCore() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	fields := strings.Fields(string(b))
	if len(fields) == 0 {
		return 0
	}
	load, err := strconv.ParseFloat(fields[0], 64)
	if err != nil {
		return 0
	}
	return load / float64(runtime.NumCPU())
}
