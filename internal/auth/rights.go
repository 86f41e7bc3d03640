package auth

import (
	"fmt"
	"slices"
	"strings"
)

// Right is what a token may do to a key.
type Right uint8

// The rights a policy grants on key prefixes.
const (
	Read  Right = iota // GET and HEAD /api?key=
	Write              // PUT and DELETE /api
	List               // GET /api/all; a listing carries values, so it also needs Read
	rightCount
)

var rightNames = [rightCount]string{Read: "read", Write: "write", List: "list"}

func (r Right) String() string {
	if r < rightCount {
		return rightNames[r]
	}
	return fmt.Sprintf("Right(%d)", uint8(r))
}

func parseRight(s string) (Right, bool) {
	for r, name := range rightNames {
		if s == name {
			return Right(r), true
		}
	}
	return 0, false
}

// prefixes is a set of key prefixes in its smallest form: sorted, and no
// prefix of another (the longer one adds nothing). nil grants nothing;
// [""] grants every key.
type prefixes []string

// normalize returns the smallest set granting the same keys as ps.
func normalize(ps []string) prefixes {
	if len(ps) == 0 {
		return nil
	}
	sorted := slices.Clone(ps)
	slices.Sort(sorted)
	out := sorted[:0:0]
	for _, p := range sorted {
		// Sorted, a prefix of p comes before p, and the last kept one is
		// the only candidate: any earlier kept prefix of p would also be a
		// prefix of it.
		if n := len(out); n > 0 && strings.HasPrefix(p, out[n-1]) {
			continue
		}
		out = append(out, p)
	}
	return out
}

func (ps prefixes) covers(key string) bool {
	for _, p := range ps {
		if strings.HasPrefix(key, p) {
			return true
		}
	}
	return false
}

// intersect returns the keys both sets grant: for two prefixes, the longer
// when one extends the other, else nothing.
func (ps prefixes) intersect(qs prefixes) prefixes {
	var out []string
	for _, p := range ps {
		for _, q := range qs {
			switch {
			case strings.HasPrefix(p, q):
				out = append(out, p)
			case strings.HasPrefix(q, p):
				out = append(out, q)
			}
		}
	}
	return normalize(out)
}

// Rights are the key prefixes a token may act on, per right: the union of
// its roles' rules. The zero value grants nothing.
type Rights struct {
	on       [rightCount]prefixes
	listable prefixes // on[List] ∩ on[Read], made once
}

func newRights(on [rightCount][]string) Rights {
	var rs Rights
	for r := range rightCount {
		rs.on[r] = normalize(on[r])
	}
	rs.listable = rs.on[List].intersect(rs.on[Read])
	return rs
}

// Allows tells whether key lies under a prefix granted for r.
func (rs *Rights) Allows(r Right, key string) bool {
	return r < rightCount && rs.on[r].covers(key)
}

// Listable returns the prefixes under which a listing may show keys: those
// granted both List and Read, smallest form, sorted. nil: none; [""]: all.
func (rs *Rights) Listable() []string {
	return slices.Clone(rs.listable)
}

// unionRights merges grants: a key is granted a right when any grant has it.
func unionRights(grants []Rights) Rights {
	var all [rightCount][]string
	for _, g := range grants {
		for r := range rightCount {
			all[r] = append(all[r], g.on[r]...)
		}
	}
	return newRights(all)
}

// allRights grants everything: what every request gets with KV_AUTH=off.
func allRights() Rights {
	var all [rightCount][]string
	for r := range rightCount {
		all[r] = []string{""}
	}
	return newRights(all)
}
