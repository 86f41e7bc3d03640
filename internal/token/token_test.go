package token

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/kvstack/kvstack/internal/kv"
)

var (
	keyA = []byte(strings.Repeat("a", MinKeyBytes))
	keyB = []byte(strings.Repeat("b", MinKeyBytes))
)

func mustCodec(t testing.TB, keys ...[]byte) *Codec {
	t.Helper()
	c, err := New(keys...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return c
}

func TestRoundTrip(t *testing.T) {
	c := mustCodec(t, keyA)
	versions := []kv.Version{
		kv.NewVersion(time.Now()),
		{Time: time.UnixMicro(0).UTC(), OpID: uuid.Nil},
		{Time: time.UnixMicro(-1).UTC(), OpID: uuid.Max},
		{Time: time.Date(9999, 12, 31, 23, 59, 59, 999999000, time.UTC), OpID: uuid.New()},
	}
	for _, v := range versions {
		for _, key := range []string{"k", "wörld", strings.Repeat("x", 512)} {
			tok := c.Encode(key, v)
			if len(tok) != Len {
				t.Errorf("Encode(%q, %v) = %q: %d characters, want %d", key, v, tok, len(tok), Len)
			}
			if strings.Trim(tok, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") != "" {
				t.Errorf("Encode(%q, %v) = %q: not URL-safe", key, v, tok)
			}
			got, err := c.Decode(key, tok)
			if err != nil || got.Compare(v) != 0 || !got.Time.Equal(v.Time) {
				t.Errorf("Decode(Encode(%q, %v)) = %v, %v; want the version back", key, v, got, err)
			}
		}
	}
}

func TestDecodeRefuses(t *testing.T) {
	c := mustCodec(t, keyA)
	v := kv.NewVersion(time.Now())
	good := c.Encode("k", v)
	flip := func(s string, i int) string {
		b := []byte(s)
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
		return string(b)
	}
	tests := []struct {
		name, key, token string
		want             error
	}{
		{"empty", "k", "", ErrMalformed},
		{"truncated", "k", good[:Len-1], ErrMalformed},
		{"truncated by a byte", "k", good[:Len-2], ErrMalformed},
		{"extended", "k", good + "A", ErrMalformed},
		{"padded", "k", good[:Len-2] + "==", ErrMalformed},
		{"standard base64 alphabet", "k", "+" + good[1:], ErrMalformed},
		{"not base64", "k", strings.Repeat("!", Len), ErrMalformed},
		{"a version string", "k", v.String()[:Len], ErrMalformed},
		{"timestamp altered", "k", flip(good, 3), ErrForged},
		{"op id altered", "k", flip(good, 20), ErrForged},
		{"mac altered", "k", flip(good, Len-3), ErrForged},
		{"another key's token", "k2", good, ErrForged},
		{"signed with another key", "k", mustCodec(t, keyB).Encode("k", v), ErrForged},
		{"all zero", "k", strings.Repeat("A", Len), ErrForged},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := c.Decode(tt.key, tt.token)
			if !errors.Is(err, tt.want) {
				t.Errorf("Decode(%q, %q) = %v, %v; want %v", tt.key, tt.token, got, err, tt.want)
			}
		})
	}
}

func TestRotation(t *testing.T) {
	v := kv.NewVersion(time.Now())
	old := mustCodec(t, keyA).Encode("k", v)
	rotated := mustCodec(t, keyB, keyA)
	if got, err := rotated.Decode("k", old); err != nil || got.Compare(v) != 0 {
		t.Errorf("a token of the retiring key: %v, %v; want it accepted", got, err)
	}
	if tok := rotated.Encode("k", v); tok == old {
		t.Errorf("the rotated codec still signs with the old key")
	}
	if _, err := mustCodec(t, keyB).Decode("k", old); !errors.Is(err, ErrForged) {
		t.Errorf("a token of a retired key: %v, want %v", err, ErrForged)
	}
}

func TestNewRefusesWeakKeys(t *testing.T) {
	if _, err := New(); err == nil {
		t.Error("New(): no error, want one for no key")
	}
	if _, err := New(keyA, []byte("short")); err == nil {
		t.Error("New with a 5-byte key: no error, want one")
	}
}

func TestParseKeys(t *testing.T) {
	got := ParseKeys(" new , old,,")
	if len(got) != 2 || string(got[0]) != "new" || string(got[1]) != "old" {
		t.Errorf("ParseKeys = %q, want [new old]", got)
	}
	if got := ParseKeys(""); len(got) != 0 {
		t.Errorf("ParseKeys(\"\") = %q, want none", got)
	}
}

// FuzzDecode: no input crashes Decode, and whatever it accepts re-encodes
// to the same token (one token per version: nothing else passes).
func FuzzDecode(f *testing.F) {
	c := mustCodec(f, keyA)
	f.Add("k", c.Encode("k", kv.NewVersion(time.Now())))
	f.Add("k", strings.Repeat("A", Len))
	f.Add("", "")
	f.Fuzz(func(t *testing.T, key, tok string) {
		v, err := c.Decode(key, tok)
		if err != nil {
			return
		}
		if again := c.Encode(key, v); again != tok {
			t.Errorf("Decode(%q, %q) accepted, but the version encodes as %q", key, tok, again)
		}
	})
}

func BenchmarkEncode(b *testing.B) {
	c := mustCodec(b, keyA)
	v := kv.NewVersion(time.Now())
	for b.Loop() {
		c.Encode("some-key", v)
	}
}

func BenchmarkDecode(b *testing.B) {
	c := mustCodec(b, keyA)
	tok := c.Encode("some-key", kv.NewVersion(time.Now()))
	for b.Loop() {
		if _, err := c.Decode("some-key", tok); err != nil {
			b.Fatal(err)
		}
	}
}
