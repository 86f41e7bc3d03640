package history

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/google/uuid"

	"github.com/kvstack/kvstack/internal/kv"
)

// brokerOutage is the linearizable load of a chaos fault that takes the
// broker away, as the campaign records it (lab/chaos/histories.go), made
// by a correct register: 2 clients write with ?wait=applied on 3 keys (a
// DELETE every fourth write), 2 read; every client sends an operation
// every 30 ms for a minute. From 20 s to 40 s the broker is gone: a write
// answers 503 at once (never applied) or, one in four, 202 once its wait
// of a second ran out, applied after the broker is back. Every other
// write is applied within its request and answered 200; a read returns
// the state at a moment within its request. With stale, one read after
// the outage returns the value its key held a second before.
func brokerOutage(seed uint64, stale bool) []Op {
	r := rand.New(rand.NewPCG(seed, 24))
	const (
		clients = 4 // 0 and 1 write, 2 and 3 read
		pace    = 30 * time.Millisecond
		length  = time.Minute
	)
	outageFrom, outageTo := t0.Add(20*time.Second), t0.Add(40*time.Second)
	keys := []string{"k0", "k1", "k2"}
	type effect struct {
		at time.Time
		op int
	}
	var ops []Op
	effects := map[string][]effect{}
	n := 0
	version := func(at time.Time) kv.Version {
		n++
		var id uuid.UUID
		id[15], id[14] = byte(n), byte(n>>8)
		return kv.Version{Time: at.Truncate(time.Microsecond), OpID: id}
	}
	within := func(from, to time.Time) time.Time {
		return from.Add(time.Duration(r.Int64N(int64(to.Sub(from)) + 1)))
	}
	var reads []int
	for c := range clients {
		for call := t0.Add(time.Duration(c) * time.Millisecond); call.Before(t0.Add(length)); {
			o := Op{Client: c, Key: keys[r.IntN(len(keys))], Call: call}
			o.Return = call.Add(time.Duration(2+r.IntN(4)) * time.Millisecond)
			if c >= 2 {
				o.Kind, o.Outcome = Get, Done
				reads = append(reads, len(ops))
				ops = append(ops, o)
				call = o.Return.Add(pace)
				continue
			}
			o.Kind, o.Wait = Put, true
			if r.IntN(4) == 3 {
				o.Kind = Delete
			} else {
				o.Value = fmt.Sprintf("%s/c%d/%d", o.Key, c, len(ops))
			}
			var at time.Time
			switch down := !call.Before(outageFrom) && call.Before(outageTo); {
			case down && r.IntN(4) == 0:
				o.Return = call.Add(time.Second)
				o.Outcome, o.Status, o.Version = Accepted, 202, version(call)
				at = within(outageTo, outageTo.Add(2*time.Second))
			case down:
				o.Outcome, o.Status = Unknown, 503
			default:
				o.Outcome, o.Status, o.Version = Done, 200, version(call)
				at = within(o.Call, o.Return)
			}
			if !at.IsZero() {
				effects[o.Key] = append(effects[o.Key], effect{at, len(ops)})
			}
			ops = append(ops, o)
			call = o.Return.Add(pace)
		}
	}
	// The register: each key's writes applied in the order of their
	// effects, a write older than the key's state (last writer wins)
	// changing nothing; a read returns the state at its moment.
	type state struct {
		at    time.Time
		found bool
		value string
		ver   kv.Version
	}
	timeline := map[string][]state{}
	for key, es := range effects {
		sort.Slice(es, func(i, j int) bool { return es[i].at.Before(es[j].at) })
		cur := state{}
		for _, e := range es {
			w := ops[e.op]
			if !w.Version.Newer(cur.ver) {
				continue
			}
			cur = state{at: e.at, found: w.Kind == Put, value: w.Value, ver: w.Version}
			timeline[key] = append(timeline[key], cur)
		}
	}
	stateAt := func(key string, at time.Time) state {
		tl := timeline[key]
		i := sort.Search(len(tl), func(i int) bool { return tl[i].at.After(at) })
		if i == 0 {
			return state{}
		}
		return tl[i-1]
	}
	staled := !stale
	for _, i := range reads {
		o := &ops[i]
		st := stateAt(o.Key, within(o.Call, o.Return))
		if !staled && o.Call.After(outageTo.Add(5*time.Second)) {
			if old := stateAt(o.Key, o.Call.Add(-time.Second)); old.ver != st.ver && old.found && st.at.Before(o.Call) {
				st, staled = old, true
			}
		}
		o.Found, o.Value, o.Version = st.found, st.value, st.ver
		if o.Kind == Get && !o.Found {
			o.Value = ""
		}
	}
	slices.SortStableFunc(ops, func(a, b Op) int { return a.Call.Compare(b.Call) })
	return ops
}

// The check of a broker outage's history decides: legal when the register
// was, illegal with the one stale read. Before, porcupine ran out of time
// on both (its verdict Unknown): every 503'd DELETE stayed in the
// history with no end, since some read answered absent after it.
func TestLinearizableDecidesABrokerOutage(t *testing.T) {
	for _, stale := range []bool{false, true} {
		t.Run(fmt.Sprintf("stale read %v", stale), func(t *testing.T) {
			ops := brokerOutage(1, stale)
			start := time.Now()
			res, err := CheckLinearizable(ops, t.TempDir())
			t.Logf("%d operations recorded: %s in %s", len(ops), res, time.Since(start).Round(time.Millisecond))
			want := porcupine.Ok
			if stale {
				want = porcupine.Illegal
			}
			if res.Verdict != want {
				t.Fatalf("verdict %s (%v), want %s", res.Verdict, err, want)
			}
		})
	}
}
