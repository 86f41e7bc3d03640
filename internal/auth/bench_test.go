package auth

import (
	"github.com/rs/zerolog"
	"testing"
	"time"

	"github.com/kvstack/kvstack/internal/auth/mint"
)

// What auth adds to a GET: judging the token (from the cache, as for a
// client reusing its token) and the read right on the key. Compare with
// the replica's CPU per GET hit (bench/NOTES.md).
func BenchmarkAuthenticateCached(b *testing.B) {
	f := newFixture(b)
	a := f.auth(b)
	r := bearerRequest(f.token(b, f.claims("bench-client", "team-a", "audit")))
	if _, err := a.Authenticate(r); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		p, err := a.Authenticate(r)
		if err != nil {
			b.Fatal(err)
		}
		if err := a.Authorize(p, Read, "team-a/some/key"); err != nil {
			b.Fatal(err)
		}
	}
}

// The same with KV_AUTH=off: the floor.
func BenchmarkAuthenticateOff(b *testing.B) {
	a, err := New(b.Context(), Config{}, zerolog.Nop(), nil)
	if err != nil {
		b.Fatal(err)
	}
	r := bearerRequest("")
	b.ReportAllocs()
	for b.Loop() {
		p, _ := a.Authenticate(r)
		if err := a.Authorize(p, Read, "team-a/some/key"); err != nil {
			b.Fatal(err)
		}
	}
}

// A token seen for the first time: its signature and claims checked.
func BenchmarkAuthenticateVerify(b *testing.B) {
	for _, make := range []func() (*mint.Key, error){mint.NewEd25519, mint.NewES256} {
		f := newFixture(b)
		f.key = mustKey(b, make)
		f.writeJWKS(b, f.key)
		f.cfg.CacheSize = 1
		a := f.auth(b)
		// Two tokens in turn through a cache of one: every call misses.
		c := f.claims("bench-client", "team-a")
		c.TTL = 24 * time.Hour
		r1 := bearerRequest(f.token(b, c))
		c.Subject = "bench-client-2"
		r2 := bearerRequest(f.token(b, c))
		b.Run(f.key.Alg(), func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				r := r1
				if i%2 == 1 {
					r = r2
				}
				i++
				if _, err := a.Authenticate(r); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
