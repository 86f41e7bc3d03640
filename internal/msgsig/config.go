package msgsig

import (
	"strings"

	"github.com/rs/zerolog"
)

// Config is where the API and the consumer find the keys.
type Config struct {
	// Keys sign every queued message (the API) and check it (the
	// consumer), the same in both: one key of at least 32 bytes, or
	// several separated by commas, the first signing and all accepted
	// (docs/DESIGN.md, Message signatures). Required. A secret: never
	// logged, only the keys' ids are.
	Keys string `env:"KV_MESSAGE_KEYS"`
}

// MarshalZerologObject logs the keys' ids, never the keys.
func (c Config) MarshalZerologObject(e *zerolog.Event) {
	if ks, err := ParseKeys(c.Keys); err == nil {
		e.Str("keys", strings.Join(ks.IDs(), ","))
	} else {
		e.Str("keys", "unset or invalid")
	}
}
