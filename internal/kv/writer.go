package kv

import (
	"context"
	"unicode"
	"unicode/utf8"
)

// WriterHeader is the message header that names who asked for an
// operation: the subject of the client's token.
const WriterHeader = "kv-written-by"

// MaxWriterBytes bounds a writer's name, as a token's subject is bounded.
const MaxWriterBytes = 255

type writerKey struct{}

// WithWriter is ctx carrying who the request acts for: the writes made
// under it are attributed to them, and its waits count against their share
// of the process's waiters. The HTTP edge sets the token's subject.
func WithWriter(ctx context.Context, subject string) context.Context {
	if subject == "" {
		return ctx
	}
	return context.WithValue(ctx, writerKey{}, subject)
}

// WriterOf is the writer WithWriter put in ctx; empty when none did (auth
// off).
func WriterOf(ctx context.Context) string {
	w, _ := ctx.Value(writerKey{}).(string)
	return w
}

// ValidateWriter accepts an empty writer (none named) or 1–255 bytes of
// UTF-8 without control characters: a writer lands in log lines, span
// attributes and a column.
func ValidateWriter(w string) error {
	if len(w) > MaxWriterBytes {
		return invalid("written_by", "longer than %d bytes", MaxWriterBytes)
	}
	if !utf8.ValidString(w) {
		return invalid("written_by", "not valid UTF-8")
	}
	for _, r := range w {
		if unicode.IsControl(r) {
			return invalid("written_by", "contains control character %U", r)
		}
	}
	return nil
}
