package simulator

import (
	"os"
	"strconv"
	"sync/atomic"
	"time"
)

// The fault switches: environment variables of the simulator process, read where they apply (a test starts
// one simulator per setting). Unset or unparsable means the default.

// envInt is the integer in the variable, or def.
func envInt(name string, def int64) int64 {
	if n, err := strconv.ParseInt(os.Getenv(name), 10, 64); err == nil {
		return n
	}
	return def
}

func envMillis(name string) time.Duration {
	return time.Duration(envInt(name, 0)) * time.Millisecond
}

// leaseTimeoutSeconds: VCSIM_LEASE_TIMEOUT_S, 300 s as on a host.
func leaseTimeoutSeconds() int32 {
	if n := envInt("VCSIM_LEASE_TIMEOUT_S", 300); n > 0 {
		return int32(n)
	}
	return 300
}

// exportRate: VCSIM_EXPORT_RATE bytes per second per download (0: unlimited).
func exportRate() int64 { return envInt("VCSIM_EXPORT_RATE", 0) }

// exportDropAfter: VCSIM_EXPORT_DROP_AFTER bytes, after which the first GET of each file of a lease is cut
// (-1: never).
func exportDropAfter() int64 { return envInt("VCSIM_EXPORT_DROP_AFTER", -1) }

// removeFailures counts the RemoveSnapshot_Task calls that failed on purpose (VCSIM_SNAPSHOT_REMOVE_FAIL).
var removeFailures int64

// nextRemoveFails says whether this RemoveSnapshot_Task is one of the first VCSIM_SNAPSHOT_REMOVE_FAIL.
func nextRemoveFails() bool {
	return atomic.AddInt64(&removeFailures, 1) <= envInt("VCSIM_SNAPSHOT_REMOVE_FAIL", 0)
}
