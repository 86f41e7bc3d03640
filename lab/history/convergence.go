package history

import (
	"fmt"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/kvstack/kvstack/internal/kv"
)

// lww is a key's state in the convergence model: the newest write
// applied, by version.
type lww struct {
	Found   bool
	Value   string
	Version kv.Version
}

// lwwWrite: a write and its version (zero: unknown, and never applied).
type lwwWrite struct {
	Kind    Kind
	Value   string
	Version kv.Version
}

// Convergence is the model of a last-writer-wins register per key: a
// write replaces the state when its version is newer, whatever the order
// writes arrive in; a read returns the state and its version.
var Convergence = porcupine.Model{
	Partition: byKey,
	Init:      func() any { return lww{} },
	Step: func(state, input, output any) (bool, any) {
		st := state.(lww)
		switch in := input.(type) {
		case lwwWrite:
			if in.Version.Time.IsZero() || !in.Version.Newer(st.Version) {
				return true, st
			}
			return true, lww{Found: in.Kind == Put, Value: in.Value, Version: in.Version}
		}
		return output.(lww) == st, st
	},
	DescribeOperation: func(input, output any) string {
		switch in := input.(type) {
		case lwwWrite:
			if in.Kind == Delete {
				return "delete @" + describeVersion(in.Version)
			}
			return fmt.Sprintf("put %q @%s", short(in.Value, 24), describeVersion(in.Version))
		}
		out := output.(lww)
		return fmt.Sprintf("get → %s @%s", quote(out.Found, short(out.Value, 24)), describeVersion(out.Version))
	},
	DescribeState: func(state any) string {
		st := state.(lww)
		return fmt.Sprintf("%s @%s", quote(st.Found, st.Value), describeVersion(st.Version))
	},
	DescribeOperationMetadata: describeMetadata,
}

// unknownSlack: the API stamps a write between the client's call and its
// answer (one host, one clock); some slack for rounding to microseconds.
const unknownSlack = 5 * time.Millisecond

// CheckConvergence checks that, after quiesced (the writes stopped and
// were all applied), the GETs sent from then on return each key's newest
// write: every write answered 202 or 200 took effect by quiesced, a write
// whose end is unknown took effect, or never, at any time after its call,
// and a newer version always wins. The version of a write whose end is
// unknown is unknown too: a final read that returns a state such a write
// could have left (its value, or a delete stamped while it was in flight)
// is taken as its effect. GETs sent before quiesced are left out.
func CheckConvergence(ops []Op, quiesced time.Time, dir string) (Result, error) {
	c := newClock(ops)
	var hist []porcupine.Operation
	var final []Op
	for _, o := range ops {
		if o.Kind == Get && o.Outcome == Done && !o.Call.Before(quiesced) {
			final = append(final, o)
		}
	}
	unknown := 0
	for _, o := range ops {
		switch {
		case o.Outcome == Refused || o.Kind == Get:
			continue
		case !o.Call.Before(quiesced):
			return Result{Model: "convergence"}, fmt.Errorf("convergence: %s was sent after the quiescence it is checked at", o)
		}
		in := lwwWrite{Kind: o.Kind, Value: o.Value, Version: o.Version}
		p := porcupine.Operation{ClientId: o.Client, Input: in, Call: c.at(o.Call), Return: c.at(quiesced), Metadata: o}
		if o.Outcome == Unknown {
			p.Return = never
			p.Input = lwwWrite{Kind: o.Kind, Value: o.Value, Version: evidence(o, final)}
			unknown++
		}
		hist = append(hist, p)
	}
	for _, o := range final {
		hist = append(hist, porcupine.Operation{
			ClientId: o.Client, Input: Get, Output: lww{Found: o.Found, Value: o.Value, Version: o.Version},
			Call: c.at(o.Call), Return: c.at(o.Return), Metadata: o,
		})
	}
	return check(Convergence, "convergence", hist, unknown, dir)
}

// evidence is the version a final read shows a write with an unknown end
// was applied with, or zero.
func evidence(w Op, final []Op) kv.Version {
	for _, r := range final {
		if r.Key != w.Key || r.Version.Time.IsZero() {
			continue
		}
		switch w.Kind {
		case Put:
			if r.Found && r.Value == w.Value {
				return r.Version
			}
		case Delete:
			t := r.Version.Time
			if !r.Found && !t.Before(w.Call.Add(-unknownSlack)) && !t.After(w.Return.Add(unknownSlack)) {
				return r.Version
			}
		}
	}
	return kv.Version{}
}
