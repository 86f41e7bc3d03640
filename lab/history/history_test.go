package history

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/kvstack/kvstack/internal/kv"
	"github.com/kvstack/kvstack/internal/token"
)

// t0 is the origin of the hand-made histories; at(ms) a time after it.
var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func at(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

// ver is a version stamped n ms after t0.
func ver(n int) kv.Version {
	return kv.Version{Time: at(n), OpID: uuid.MustParse("00000000-0000-4000-8000-00000000000" + string(rune('0'+n%10)))}
}

func write(client int, kind Kind, value string, call, ret int, out Outcome, v kv.Version) Op {
	return Op{Client: client, Key: "k", Kind: kind, Value: value, Wait: out == Done, Call: at(call), Return: at(ret), Outcome: out, Version: v}
}

func read(client int, found bool, value string, call, ret int, v kv.Version) Op {
	return Op{Client: client, Key: "k", Kind: Get, Found: found, Value: value, Call: at(call), Return: at(ret), Outcome: Done, Version: v}
}

func tokenRead(client int, min kv.Version, got kv.Version, call, ret int) Op {
	o := read(client, true, "", call, ret, got)
	o.MinToken, o.MinVersion = "t", min
	return o
}

// verdict runs check and compares its verdict with want; an illegal
// history must come with its visualisation, named in the error.
func verdict(t *testing.T, check func(dir string) (Result, error), wantLegal bool) {
	t.Helper()
	dir := t.TempDir()
	res, err := check(dir)
	if wantLegal {
		if err != nil {
			t.Fatalf("want legal, got %v (%s)", err, res)
		}
		return
	}
	if err == nil {
		t.Fatalf("want illegal, got %s", res)
	}
	if res.Visualization == "" || !strings.Contains(err.Error(), res.Visualization) {
		t.Fatalf("error %q does not name the visualisation %q", err, res.Visualization)
	}
	if b, err := os.ReadFile(res.Visualization); err != nil || !strings.Contains(string(b), "<html") {
		t.Fatalf("visualisation %s: %v, %d bytes", res.Visualization, err, len(b))
	}
}

func TestLinearizable(t *testing.T) {
	cases := []struct {
		name  string
		ops   []Op
		legal bool
	}{
		{"a read after an applied write sees it", []Op{
			write(0, Put, "a", 0, 10, Done, ver(5)),
			read(1, true, "a", 20, 30, ver(5)),
		}, true},
		{"a read concurrent with a write sees either state", []Op{
			write(0, Put, "a", 0, 10, Done, ver(5)),
			write(0, Put, "b", 20, 40, Done, ver(25)),
			read(1, true, "a", 21, 30, ver(5)),
			read(2, true, "b", 22, 31, ver(25)),
		}, true},
		{"a write whose wait ran out may be seen late, or not at all", []Op{
			write(0, Put, "a", 0, 10, Done, ver(5)),
			write(1, Put, "b", 20, 30, Accepted, ver(25)),
			read(2, true, "a", 40, 50, ver(5)),
			read(2, true, "b", 60, 70, ver(25)),
		}, true},
		{"a delete answered 200 reads absent", []Op{
			write(0, Put, "a", 0, 10, Done, ver(5)),
			write(0, Delete, "", 20, 30, Done, ver(25)),
			read(1, false, "", 40, 50, ver(25)),
		}, true},
		{"a read after an applied write returns the older value (issue 24)", []Op{
			write(0, Put, "a", 0, 10, Done, ver(5)),
			write(0, Put, "b", 20, 30, Done, ver(25)),
			read(1, true, "a", 40, 50, ver(5)),
		}, false},
		{"a read after an applied delete still finds the value", []Op{
			write(0, Put, "a", 0, 10, Done, ver(5)),
			write(0, Delete, "", 20, 30, Done, ver(25)),
			read(1, true, "a", 40, 50, ver(5)),
		}, false},
		{"reads go back: new value seen, then the old one", []Op{
			write(0, Put, "a", 0, 10, Done, ver(5)),
			write(1, Put, "b", 20, 100, Unknown, kv.Version{}),
			read(2, true, "b", 30, 40, ver(25)),
			read(3, true, "a", 50, 60, ver(5)),
		}, false},
		{"a value nobody wrote", []Op{
			read(1, true, "z", 0, 10, ver(5)),
		}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			verdict(t, func(dir string) (Result, error) { return CheckLinearizable(c.ops, dir) }, c.legal)
		})
	}
}

func TestLinearizableLeavesOutWhatSaysNothing(t *testing.T) {
	ops := []Op{
		write(0, Put, "a", 0, 10, Done, ver(5)),
		write(0, Put, "b", 20, 30, Refused, kv.Version{}),
		{Client: 1, Key: "k", Kind: Get, Call: at(40), Return: at(50), Outcome: Unknown},
		read(1, true, "a", 60, 70, ver(5)),
		// An unknown end no read observed: a value never returned.
		write(2, Put, "c", 80, 90, Unknown, kv.Version{}),
		// Unknown ends that were: both kept.
		write(3, Put, "d", 120, 130, Unknown, kv.Version{}),
		read(1, true, "d", 140, 150, ver(125)),
		write(3, Delete, "", 160, 170, Accepted, ver(165)),
		read(1, false, "", 180, 190, ver(165)),
		// And a delete with no absent read after it.
		write(2, Delete, "", 200, 210, Accepted, ver(205)),
	}
	res, err := CheckLinearizable(ops, t.TempDir())
	if err != nil || res.Ops != 6 || res.Unknown != 2 || res.Keys != 1 {
		t.Fatalf("got %s, %v; want 6 operations checked on 1 key, 2 unknown", res, err)
	}
}

func TestSessions(t *testing.T) {
	cases := []struct {
		name  string
		ops   []Op
		legal bool
	}{
		{"reads at least their tokens, never going back", []Op{
			tokenRead(0, ver(1), ver(1), 0, 10),
			tokenRead(0, ver(1), ver(3), 20, 30),
			tokenRead(0, ver(2), ver(3), 40, 50),
			tokenRead(1, ver(1), ver(1), 40, 50), // another client's session
		}, true},
		{"a read older than its token", []Op{
			tokenRead(0, ver(3), ver(2), 0, 10),
		}, false},
		{"a client's reads go back", []Op{
			tokenRead(0, ver(1), ver(3), 0, 10),
			tokenRead(0, ver(1), ver(2), 20, 30),
		}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			verdict(t, func(dir string) (Result, error) { return CheckSessions(c.ops, dir) }, c.legal)
		})
	}
}

func TestConvergence(t *testing.T) {
	quiesced := at(100)
	cases := []struct {
		name  string
		ops   []Op
		legal bool
	}{
		{"the newest accepted write holds, whatever the order", []Op{
			write(0, Put, "b", 0, 10, Accepted, ver(8)),
			write(1, Put, "a", 1, 11, Accepted, ver(2)),
			read(2, true, "b", 110, 120, ver(8)),
		}, true},
		{"a newer write with an unknown end may win", []Op{
			write(0, Put, "a", 0, 10, Accepted, ver(5)),
			write(1, Put, "b", 20, 30, Unknown, kv.Version{}),
			read(2, true, "b", 110, 120, ver(25)),
		}, true},
		{"or be lost", []Op{
			write(0, Put, "a", 0, 10, Accepted, ver(5)),
			write(1, Put, "b", 20, 30, Unknown, kv.Version{}),
			read(2, true, "a", 110, 120, ver(5)),
		}, true},
		{"an accepted delete holds", []Op{
			write(0, Put, "a", 0, 10, Accepted, ver(5)),
			write(1, Delete, "", 20, 30, Accepted, ver(25)),
			read(2, false, "", 110, 120, ver(25)),
		}, true},
		{"an accepted write is lost", []Op{
			write(0, Put, "a", 0, 10, Accepted, ver(5)),
			write(1, Put, "b", 20, 30, Accepted, ver(25)),
			read(2, true, "a", 110, 120, ver(5)),
		}, false},
		{"a deleted value is resurrected", []Op{
			write(0, Put, "a", 0, 10, Accepted, ver(5)),
			write(1, Delete, "", 20, 30, Accepted, ver(25)),
			read(2, true, "a", 110, 120, ver(5)),
		}, false},
		{"an older write's value under the newest version", []Op{
			write(0, Put, "a", 0, 10, Accepted, ver(5)),
			write(1, Put, "b", 20, 30, Accepted, ver(25)),
			read(2, true, "a", 110, 120, ver(25)),
		}, false},
		{"a key nobody wrote is absent", []Op{
			read(2, true, "z", 110, 120, ver(25)),
		}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			verdict(t, func(dir string) (Result, error) { return CheckConvergence(c.ops, quiesced, dir) }, c.legal)
		})
	}
}

func TestConvergenceRefusesAWriteAfterQuiescence(t *testing.T) {
	ops := []Op{write(0, Put, "a", 110, 120, Accepted, ver(5))}
	if _, err := CheckConvergence(ops, at(100), t.TempDir()); err == nil {
		t.Fatal("a write sent after quiescence was accepted into the check")
	}
}

// VersionOf reads the version the API's tokens carry.
func TestVersionOfReadsTheAPIsTokens(t *testing.T) {
	c, err := token.New([]byte(strings.Repeat("k", token.MinKeyBytes)))
	if err != nil {
		t.Fatal(err)
	}
	want := kv.NewVersion(time.Now())
	got, err := VersionOf(c.Encode("key", want))
	if err != nil || got != want {
		t.Fatalf("VersionOf(Encode(%s)) = %s, %v", want, got, err)
	}
	if _, err := VersionOf("not a token!"); err == nil {
		t.Fatal("VersionOf accepted a malformed token")
	}
}
