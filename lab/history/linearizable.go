package history

import (
	"fmt"
	"slices"
	"time"

	"github.com/anishathalye/porcupine"
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
// A write with an unknown end that no read can have observed (a PUT whose
// value no GET returned, a DELETE with no GET answering absent after its
// call) is left out too: it can always take effect last, where it changes
// nothing, so the verdict is the same, and porcupine's search, which grows
// with each operation that never ends, stays small under faults that
// refuse many writes.
func CheckLinearizable(ops []Op, dir string) (Result, error) {
	c := newClock(ops)
	var hist []porcupine.Operation
	unknown := 0
	seen := map[string]bool{}             // key and value a GET returned
	var absent = map[string][]time.Time{} // when GETs answering absent were sent, by key
	for _, o := range ops {
		if o.Kind == Get && o.Outcome == Done {
			if o.Found {
				seen[o.Key+"\x00"+o.Value] = true
			} else {
				absent[o.Key] = append(absent[o.Key], o.Return)
			}
		}
	}
	observable := func(o Op) bool {
		if o.Kind == Put {
			return seen[o.Key+"\x00"+o.Value]
		}
		return slices.ContainsFunc(absent[o.Key], func(t time.Time) bool { return !t.Before(o.Call) })
	}
	for _, o := range ops {
		if o.Outcome == Refused || (o.Kind == Get && o.Outcome != Done) {
			continue
		}
		if o.Kind != Get && o.Outcome != Done && !observable(o) {
			continue
		}
		p := porcupine.Operation{
			ClientId: o.Client, Input: registerInput{Kind: o.Kind, Value: o.Value},
			Call: c.at(o.Call), Return: c.at(o.Return), Metadata: o,
		}
		if o.Kind == Get {
			p.Output = register{Found: o.Found, Value: o.Value}
		} else if o.Outcome != Done {
			p.Return = never
			unknown++
		}
		hist = append(hist, p)
	}
	return check(Linearizable, "linearizable", hist, unknown, dir)
}
