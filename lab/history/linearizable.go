package history

import (
	"fmt"
	"slices"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/kvstack/kvstack/internal/kv"
)

// register is a key's state in the linearizable model.
type register struct {
	Found bool
	Value string
}

// registerInput: a write (Put, Delete) or a read (Get).
type registerInput struct {
	Kind  Kind
	Value string
}

// Linearizable is the model of a register per key: a PUT sets it, a DELETE
// empties it, a GET returns it.
var Linearizable = porcupine.Model{
	Partition: byKey,
	Init:      func() any { return register{} },
	Step: func(state, input, output any) (bool, any) {
		in, st := input.(registerInput), state.(register)
		switch in.Kind {
		case Put:
			return true, register{Found: true, Value: in.Value}
		case Delete:
			return true, register{}
		}
		return output.(register) == st, st
	},
	DescribeOperation: func(input, output any) string {
		in := input.(registerInput)
		switch in.Kind {
		case Put:
			return fmt.Sprintf("put %q", short(in.Value, 24))
		case Delete:
			return "delete"
		}
		out := output.(register)
		return "get → " + quote(out.Found, short(out.Value, 24))
	},
	DescribeState: func(state any) string {
		st := state.(register)
		return quote(st.Found, st.Value)
	},
	DescribeOperationMetadata: describeMetadata,
}

// CheckLinearizable checks that the history's writes and GETs behave as
// one register per key. A write answered 200 took effect between its call
// and its answer; any other write that may have been applied (202, an
// error, no answer) took effect at some time after its call, or never. A
// GET without an answer, and a refused operation, say nothing and are
// left out. Values written must be unique per key.
//
// Porcupine's search grows with each operation that never ends: under a
// broker outage, a few dozen of them among thousands of operations made
// it run out of time (Unknown). So a write with an unknown end is given
// the end that the reads' answers prove, with no change to the verdict:
//   - a read names the version of the state it returned, a 404 the
//     tombstone's (Op.Version). A write whose version is known (a 202)
//     and which no read returned can take effect last, where it changes
//     nothing: left out. One that a read returned took effect before that
//     read answered: its end is the first such answer.
//   - a PUT whose version is unknown (an error, no answer) is found by its
//     value, unique: left out when no read returned it, else ended at the
//     first that did.
//   - a DELETE no read returned can only be the one behind a read that
//     answered absent with a tombstone no DELETE of the history is known
//     to have written (or with no version). Kept, without an end, only
//     when such a read answered after its call; else left out.
func CheckLinearizable(ops []Op, dir string) (Result, error) {
	c := newClock(ops)
	// firstSeen: when a read first answered with a version, or a value.
	firstSeen := map[string]time.Time{}
	see := func(id string, at time.Time) {
		if t, ok := firstSeen[id]; !ok || at.Before(t) {
			firstSeen[id] = at
		}
	}
	byVersion := func(key string, v kv.Version) string { return key + "\x00v\x00" + v.String() }
	byValue := func(key, value string) string { return key + "\x00=\x00" + value }
	deletes := map[string]bool{} // the tombstones the history's DELETEs wrote, by byVersion
	for _, o := range ops {
		if o.Kind == Delete && !o.Version.Time.IsZero() {
			deletes[byVersion(o.Key, o.Version)] = true
		}
	}
	// unexplained: when reads answered absent with a tombstone of no known
	// DELETE, or with none once the key had been written, by key.
	unexplained := map[string][]time.Time{}
	for _, o := range ops {
		if o.Kind != Get || o.Outcome != Done {
			continue
		}
		if !o.Version.Time.IsZero() {
			see(byVersion(o.Key, o.Version), o.Return)
		}
		if o.Found {
			see(byValue(o.Key, o.Value), o.Return)
		} else if o.Version.Time.IsZero() || !deletes[byVersion(o.Key, o.Version)] {
			unexplained[o.Key] = append(unexplained[o.Key], o.Return)
		}
	}
	// end is the time a write with an unknown end is known to have taken
	// effect by: the first read that returned its version or (a PUT) its
	// value. ok false: no read can have observed it, it is left out. A
	// DELETE no read returned, but that a read answering absent without a
	// known tombstone may have observed, is kept without an end (zero).
	end := func(o Op) (t time.Time, ok bool) {
		var ids []string
		if !o.Version.Time.IsZero() {
			ids = append(ids, byVersion(o.Key, o.Version))
		}
		if o.Kind == Put {
			ids = append(ids, byValue(o.Key, o.Value))
		}
		for _, id := range ids {
			if seen, found := firstSeen[id]; found && (!ok || seen.Before(t)) {
				t, ok = seen, true
			}
		}
		if !ok && o.Kind == Delete {
			ok = slices.ContainsFunc(unexplained[o.Key], func(t time.Time) bool { return !t.Before(o.Call) })
		}
		return t, ok
	}
	var hist []porcupine.Operation
	unknown := 0
	for _, o := range ops {
		if o.Outcome == Refused || (o.Kind == Get && o.Outcome != Done) {
			continue
		}
		p := porcupine.Operation{
			ClientId: o.Client, Input: registerInput{Kind: o.Kind, Value: o.Value},
			Call: c.at(o.Call), Return: c.at(o.Return), Metadata: o,
		}
		switch {
		case o.Kind == Get:
			p.Output = register{Found: o.Found, Value: o.Value}
		case o.Outcome != Done:
			t, ok := end(o)
			if !ok {
				continue
			}
			p.Return = never
			if !t.IsZero() {
				p.Return = c.at(t)
			}
			unknown++
		}
		hist = append(hist, p)
	}
	return check(Linearizable, "linearizable", hist, unknown, dir)
}
