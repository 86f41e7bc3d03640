package native

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// MessageKeyFile is where the stack keeps the key its APIs sign messages
// with and its consumers check them with (KV_MESSAGE_KEYS), in
// KV_STACK_DIR: made on first use, kept across restarts so that messages
// still queued stay valid.
const MessageKeyFile = "message-keys"

// messageKeys is KV_MESSAGE_KEYS from the environment when set, else the
// stack's own key, made if missing.
func (s *Settings) messageKeys() (string, error) {
	if v := s.environ["KV_MESSAGE_KEYS"]; v != "" {
		return v, nil
	}
	path := filepath.Join(s.Dir, MessageKeyFile)
	b, err := os.ReadFile(path)
	if err == nil {
		if k := strings.TrimSpace(string(b)); k != "" {
			return k, nil
		}
		return "", fmt.Errorf("%s is empty: remove it to have a new key made", path)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	if err := makeStackDir(s.Dir); err != nil {
		return "", err
	}
	key := rand.Text() + rand.Text() // 2 × 128 bits, base32
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) { // made meanwhile by another command
		return s.messageKeys()
	}
	if err != nil {
		return "", err
	}
	if _, err := f.WriteString(key + "\n"); err != nil {
		f.Close()
		return "", err
	}
	return key, f.Close()
}

// MessageKeys is KV_MESSAGE_KEYS as the stack's APIs and consumers get it:
// for a test that signs what it puts straight on the queues.
func (s *Settings) MessageKeys() string { return s.messageKey }
