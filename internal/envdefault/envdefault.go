// Package envdefault derives a configuration's defaults from its env tags,
// so that each default is written once, in its envDefault tag, and a
// package's DefaultConfig() can never drift from what an empty environment
// gives.
package envdefault

import (
	"fmt"

	"github.com/caarlos0/env/v11"
)

// Of returns T as parsed from an empty environment: every field at its
// envDefault. It panics on a tag that cannot be parsed, a programming error
// that each package's tests meet at once (they use its defaults).
func Of[T any]() T {
	v, err := env.ParseAsWithOptions[T](env.Options{Environment: map[string]string{}})
	if err != nil {
		panic(fmt.Sprintf("envdefault: %T: %v", v, err))
	}
	return v
}
