package history

import (
	"fmt"

	"github.com/anishathalye/porcupine"

	"github.com/kvstack/kvstack/internal/kv"
)

// Sessions is the model of one client's token-carrying GETs of one key,
// in the order the client sent them: each returns a state no older than
// its token, nor than any state an earlier one of them returned. A GET's
// input is its token's version, its output the version of the state it
// returned; the model's state is the newest version the client has read.
var Sessions = porcupine.Model{
	Partition: bySession,
	Init:      func() any { return kv.Version{} },
	Step: func(state, input, output any) (bool, any) {
		newest, got := state.(kv.Version), output.(kv.Version)
		min := input.(kv.Version)
		if got.Compare(min) < 0 || got.Compare(newest) < 0 {
			return false, newest
		}
		return true, got
	},
	DescribeOperation: func(input, output any) string {
		return fmt.Sprintf("get min %s → %s", describeVersion(input.(kv.Version)), describeVersion(output.(kv.Version)))
	},
	DescribeState:             func(state any) string { return "read " + describeVersion(state.(kv.Version)) },
	DescribeOperationMetadata: describeMetadata,
}

func describeVersion(v kv.Version) string {
	if v.Time.IsZero() {
		return "never written"
	}
	return v.String()
}

// bySession partitions a history by client and key: a session's
// guarantees bind its own reads only.
func bySession(ops []porcupine.Operation) [][]porcupine.Operation {
	type session struct {
		client int
		key    string
	}
	return partition(ops, func(o Op) session { return session{o.Client, o.Key} })
}

// CheckSessions checks the GETs that carried a token and were answered:
// none returned a state older than its token, and no client's such reads
// of a key went back. A client sends its requests one at a time, so its
// reads are checked in the order it sent them.
func CheckSessions(ops []Op, dir string) (Result, error) {
	c := newClock(ops)
	var hist []porcupine.Operation
	keys := map[string]bool{}
	for _, o := range ops {
		if o.Kind != Get || o.MinToken == "" || o.Outcome != Done {
			continue
		}
		keys[o.Key] = true
		hist = append(hist, porcupine.Operation{
			ClientId: o.Client, Input: o.MinVersion, Output: o.Version,
			Call: c.at(o.Call), Return: c.at(o.Return), Metadata: o,
		})
	}
	res, err := check(Sessions, "sessions", hist, 0, dir)
	res.Keys = len(keys)
	return res, err
}
