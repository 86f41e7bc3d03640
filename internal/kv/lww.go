package kv

import (
	"bytes"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
)

// Version orders operations on a key: last writer wins by (Time, OpID).
// OpID breaks ties between operations accepted in the same microsecond, so
// the order is total and every replica, consumer and store agrees on it.
type Version struct {
	Time time.Time
	OpID uuid.UUID
}

// Compare returns -1, 0 or +1 as v is older than, the same as, or newer than w.
func (v Version) Compare(w Version) int {
	if c := v.Time.Compare(w.Time); c != 0 {
		return c
	}
	return bytes.Compare(v.OpID[:], w.OpID[:])
}

// Newer reports whether v wins over w.
func (v Version) Newer(w Version) bool { return v.Compare(w) > 0 }

// String renders the version so that byte order of the strings is the order
// of the versions: zero-padded microseconds since the epoch, then the op id
// in lower-case hex. Redis compares versions in this form.
func (v Version) String() string {
	return string(v.AppendText(make([]byte, 0, versionLen)))
}

// versionLen is the length of a Version's text.
const versionLen = 20 + 1 + 36

// AppendText appends the text of String to b without allocating: the
// consumer writes one per applied operation (cache entries, news).
func (v Version) AppendText(b []byte) []byte {
	micros := v.Time.UnixMicro()
	if micros < 0 {
		return fmt.Appendf(b, "%020d:%s", micros, v.OpID) // before 1970: never stamped by the API
	}
	var digits [20]byte
	for i := range digits {
		digits[len(digits)-1-i] = byte('0' + micros%10)
		micros /= 10
	}
	b = append(b, digits[:]...)
	b = append(b, ':')
	for i, c := range v.OpID {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			b = append(b, '-')
		}
		b = append(b, hexDigits[c>>4], hexDigits[c&0xf])
	}
	return b
}

const hexDigits = "0123456789abcdef"

// ParseVersion is the inverse of Version.String.
func ParseVersion(s string) (Version, error) {
	if len(s) != 20+1+36 || s[20] != ':' || strings.IndexFunc(s[:20], notDigit) >= 0 {
		return Version{}, fmt.Errorf("version %q: malformed", s)
	}
	micros, err := strconv.ParseInt(s[:20], 10, 64)
	if err != nil {
		return Version{}, fmt.Errorf("version %q: %w", s, err)
	}
	opID, err := uuid.Parse(s[21:])
	if err != nil {
		return Version{}, fmt.Errorf("version %q: %w", s, err)
	}
	return Version{Time: time.UnixMicro(micros).UTC(), OpID: opID}, nil
}

func notDigit(r rune) bool { return r < '0' || r > '9' }

// Winners reduces a batch of operations to the newest one per key. It
// returns the indexes of the winners, ordered by key (a stable lock order for
// the stores), and of the losers: operations beaten by a newer one in the same
// batch, or repeating the winner's version, which applying the winner once
// covers.
func Winners(ops []Op) (winners, losers []int) {
	best := make(map[string]int, len(ops))
	for i, op := range ops {
		j, seen := best[op.Key]
		switch {
		case !seen:
			best[op.Key] = i
		case op.Version.Newer(ops[j].Version):
			best[op.Key] = i
			losers = append(losers, j)
		default:
			losers = append(losers, i)
		}
	}
	winners = make([]int, 0, len(best))
	for _, i := range best {
		winners = append(winners, i)
	}
	slices.SortFunc(winners, func(a, b int) int { return strings.Compare(ops[a].Key, ops[b].Key) })
	return winners, losers
}
