package token

import (
	"fmt"

	"github.com/rs/zerolog"
)

// Config says where the signing key comes from.
type Config struct {
	// Key, when set, is used instead of the key kept in PostgreSQL
	// (kv_settings.token_key, made at random by the migrations): several
	// keys separated by commas sign with the first and accept all, which is
	// how a key is rotated. At least MinKeyBytes bytes each. A secret: it
	// is never logged.
	Key string `env:"KV_TOKEN_KEY"`
}

// MarshalZerologObject logs where the key comes from, never the key.
func (c Config) MarshalZerologObject(e *zerolog.Event) {
	if n := len(ParseKeys(c.Key)); n > 0 {
		e.Str("key", fmt.Sprintf("KV_TOKEN_KEY (%d keys)", n))
		return
	}
	e.Str("key", "PostgreSQL kv_settings")
}
