package kv

import "unicode/utf8"

// PrefixEnd is the least string greater than every key that starts with
// prefix, in the keys' order (bytewise, COLLATE "C"; for UTF-8, the order
// of code points): keys under prefix are exactly those in [prefix, end).
// ok is false when no string bounds them (the empty prefix, or one of
// U+10FFFF only). end is valid UTF-8, so that it can bound a query.
func PrefixEnd(prefix string) (end string, ok bool) {
	for prefix != "" {
		r, size := utf8.DecodeLastRuneInString(prefix)
		prefix = prefix[:len(prefix)-size]
		switch {
		case r == utf8.MaxRune:
			continue // no greater rune: carry into the one before
		case r == 0xD7FF:
			r = 0xE000 // past the surrogates, which UTF-8 cannot hold
		default:
			r++
		}
		return prefix + string(r), true
	}
	return "", false
}
