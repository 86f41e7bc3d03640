package main

import (
	"testing"
	"time"
)

// The checks must be able to fail: each way a key can be wrong is caught.
func TestVerifyKey(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	ack := func(op, value string, ms int, id string) attempt {
		return attempt{Key: "k", Op: op, Value: value, Start: at(ms - 1), End: at(ms + 1), Status: 202, OpID: id, TS: at(ms)}
	}
	refused := func(op, value string, ms int) attempt {
		return attempt{Key: "k", Op: op, Value: value, Start: at(ms - 1), End: at(ms + 1), Status: 503}
	}
	put := func(value string, ms int, id string) *row {
		return &row{Value: value, Ver: version{at(ms), id}}
	}
	tomb := func(ms int, id string) *row { return &row{Deleted: true, Ver: version{at(ms), id}} }
	const a, b, c = "00000000-0000-0000-0000-00000000000a", "00000000-0000-0000-0000-00000000000b", "00000000-0000-0000-0000-00000000000c"

	tests := []struct {
		name   string
		ops    []attempt
		stored *row
		want   keyVerdict
	}{
		{"newest ack stored", []attempt{ack("put", "1", 10, a), ack("put", "2", 20, b)}, put("2", 20, b), verdictOK},
		{"older ack stored", []attempt{ack("put", "1", 10, a), ack("put", "2", 20, b)}, put("1", 10, a), verdictLost},
		{"ack lost, no row", []attempt{ack("put", "1", 10, a)}, nil, verdictLost},
		{"delete acked, value stored", []attempt{ack("put", "1", 10, a), ack("delete", "", 20, b)}, put("1", 20, b), verdictLost},
		{"delete acked, tombstone", []attempt{ack("put", "1", 10, a), ack("delete", "", 20, b)}, tomb(20, b), verdictOK},
		{"same version, other value", []attempt{ack("put", "1", 10, a)}, put("x", 10, a), verdictLost},
		{"tie broken by op id", []attempt{ack("put", "1", 10, a), ack("put", "2", 10, b)}, put("2", 10, b), verdictOK},
		{"tie, lower op id stored", []attempt{ack("put", "1", 10, a), ack("put", "2", 10, b)}, put("1", 10, a), verdictLost},
		{"503 put applied, newer", []attempt{ack("put", "1", 10, a), refused("put", "2", 20)}, put("2", 20, c), verdictUnacked},
		{"503 delete applied", []attempt{ack("put", "1", 10, a), refused("delete", "", 20)}, tomb(20, c), verdictUnacked},
		{"503 put, stamped outside its request", []attempt{refused("put", "2", 20)}, put("2", 500, c), verdictUnexplained},
		{"nothing sent, row exists", nil, put("x", 10, a), verdictUnexplained},
		{"nothing acked, nothing stored", []attempt{refused("put", "1", 10)}, nil, verdictOK},
		{"value nobody sent", []attempt{ack("put", "1", 10, a)}, put("zzz", 30, c), verdictUnexplained},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got, why := verifyKey(tt.ops, tt.stored); got != tt.want {
				t.Errorf("verifyKey = %d (%s), want %d", got, why, tt.want)
			}
		})
	}
}

func TestCacheStale(t *testing.T) {
	ts := time.UnixMicro(1764072000123456).UTC()
	const id = "00000000-0000-0000-0000-00000000000a"
	v := "00001764072000123456:" + id
	stored := &row{Value: "x", Ver: version{ts, id}}
	tests := []struct {
		name   string
		c      *cacheEntry
		stored *row
		want   bool
	}{
		{"miss", nil, stored, false},
		{"same", &cacheEntry{V: v, D: "0", Val: "x"}, stored, false},
		{"old version", &cacheEntry{V: "00001764071000000000:" + id, D: "0", Val: "x"}, stored, true},
		{"other value", &cacheEntry{V: v, D: "0", Val: "y"}, stored, true},
		{"tombstone cached, value stored", &cacheEntry{V: v, D: "1"}, stored, true},
		{"cached, no row", &cacheEntry{V: v, D: "0", Val: "x"}, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got, why := cacheStale(tt.c, tt.stored); got != tt.want {
				t.Errorf("cacheStale = %v (%s), want %v", got, why, tt.want)
			}
		})
	}
}
