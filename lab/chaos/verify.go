package main

import (
	"fmt"
	"time"
)

// row is a key's stored state in PostgreSQL.
type row struct {
	Value   string
	Deleted bool
	Ver     version
}

// keyVerdict is what the LWW check concluded for one key.
type keyVerdict int

const (
	verdictOK          keyVerdict = iota // the newest acknowledged operation is stored
	verdictUnacked                       // a newer op that got no 202 (503/timeout) is stored: allowed
	verdictLost                          // an acknowledged op is missing or older state is stored
	verdictUnexplained                   // stored state matches no operation sent
)

// clockSlack: the API stamps an operation between the client's send and its
// answer (same host, same clock); a little slack for rounding to µs.
const clockSlack = 5 * time.Millisecond

// verifyKey checks one key: the stored state must be the newest
// acknowledged operation, or an operation newer than it that was sent but
// not acknowledged (a 503 promises nothing either way). It never may be
// older than the newest acknowledged one, nor absent when one was.
func verifyKey(ops []attempt, stored *row) (keyVerdict, string) {
	var newest *attempt
	for i := range ops {
		if ops[i].acked() && (newest == nil || version{newest.TS, newest.OpID}.less(version{ops[i].TS, ops[i].OpID})) {
			newest = &ops[i]
		}
	}
	if stored == nil {
		if newest != nil {
			return verdictLost, fmt.Sprintf("no row; newest acknowledged %s %s", newest.Op, version{newest.TS, newest.OpID})
		}
		return verdictOK, ""
	}
	if newest != nil {
		nv := version{newest.TS, newest.OpID}
		switch {
		case stored.Ver.less(nv):
			return verdictLost, fmt.Sprintf("stored %s is older than acknowledged %s %s", stored.Ver, newest.Op, nv)
		case stored.Ver == nv || (stored.Ver.TS.Equal(nv.TS) && stored.Ver.OpID == nv.OpID):
			if newest.Op == "delete" && !stored.Deleted || newest.Op == "put" && (stored.Deleted || stored.Value != newest.Value) {
				return verdictLost, fmt.Sprintf("stored version %s but its content (deleted=%v) is not the acknowledged %s's", nv, stored.Deleted, newest.Op)
			}
			return verdictOK, ""
		}
	}
	// Newer than every acknowledged op: it must be one that got no 202.
	for _, a := range ops {
		if a.acked() {
			if a.OpID == stored.Ver.OpID {
				return verdictUnexplained, fmt.Sprintf("stored op %s is acknowledged with timestamp %s, stored with %s", a.OpID, a.TS, stored.Ver.TS)
			}
			continue
		}
		if stored.Ver.TS.Before(a.Start.Add(-clockSlack)) || stored.Ver.TS.After(a.End.Add(clockSlack)) {
			continue
		}
		if a.Op == "delete" && stored.Deleted || a.Op == "put" && !stored.Deleted && stored.Value == a.Value {
			return verdictUnacked, ""
		}
	}
	return verdictUnexplained, fmt.Sprintf("stored %s (deleted=%v) matches no operation sent", stored.Ver, stored.Deleted)
}

// cacheEntry is a Redis hash kv:<key> (fields v, d, val).
type cacheEntry struct {
	V, D, Val string
}

// cacheStale: a cached entry that differs from PostgreSQL's row (an absent
// entry is a miss, never stale).
func cacheStale(c *cacheEntry, stored *row) (bool, string) {
	if c == nil {
		return false, ""
	}
	if stored == nil {
		return true, fmt.Sprintf("cached %s but no row", c.V)
	}
	want := fmt.Sprintf("%020d:%s", stored.Ver.TS.UnixMicro(), stored.Ver.OpID)
	d := "0"
	if stored.Deleted {
		d = "1"
	}
	if c.V != want || c.D != d || (!stored.Deleted && c.Val != stored.Value) {
		return true, fmt.Sprintf("cached v=%s d=%s, stored v=%s d=%s", c.V, c.D, want, d)
	}
	return false, ""
}
