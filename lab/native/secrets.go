package native

import (
	"bufio"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// SecretsFile is where the stack keeps the passwords it makes for the
// engines it runs itself (KV_ENGINES=private, the HA topology), in
// KV_STACK_DIR, mode 0600: NAME=password lines, each made on first use and
// kept, as the engines keep the users they were given. A default refers to
// one as ${SECRET_NAME}; deleting the file (engines stopped) makes new
// ones, which the next start gives the engines (docs/OPERATIONS.md).
const SecretsFile = "engine-passwords"

// engineSecrets are the passwords that no URL of the settings names but
// the stack's engines need: PostgreSQL's superuser (the stack's own
// sessions to provision it) and Redis' default user (the stack's checks,
// the Redis Cluster's tools); in the HA topology, the users of
// PostgreSQL's replication and pg_rewind (Patroni's), the Redis
// replicas' (masteruser) and Patroni's REST API's (its unsafe endpoints).
var engineSecrets = []string{"PG_SUPERUSER", "REDIS_DEFAULT", "PG_REPLICATION", "PG_REWIND", "REDIS_REPLICATION", "PATRONI_REST"}

// secret is the stack's password NAME, made when missing.
func (s *Settings) secret(name string) (string, error) {
	if v, ok := s.secrets[name]; ok {
		return v, nil
	}
	path := filepath.Join(s.vars["KV_STACK_DIR"], SecretsFile) // resolved first of all
	all, err := readSecrets(path)
	if err != nil {
		return "", err
	}
	if v, ok := all[name]; ok {
		s.secrets[name] = v
		return v, nil
	}
	all[name] = rand.Text() // 128 bits, base32: safe in any URL
	var b strings.Builder
	names := make([]string, 0, len(all))
	for n := range all {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(&b, "%s=%s\n", n, all[n])
	}
	if err := makeStackDir(filepath.Dir(path)); err != nil {
		return "", err
	}
	if err := writeReplace(path, []byte(b.String()), 0o600); err != nil {
		return "", fmt.Errorf("the engines' passwords: %w", err)
	}
	s.secrets[name] = all[name]
	return all[name], nil
}

func readSecrets(path string) (map[string]string, error) {
	out := map[string]string{}
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return out, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if name, value, ok := strings.Cut(strings.TrimSpace(sc.Text()), "="); ok && value != "" {
			out[name] = value
		}
	}
	return out, sc.Err()
}

// Secret is the stack's password NAME (one of engineSecrets, or one a
// default names), made by Load where the stack runs its own engines. It
// panics on any other, a programming error.
func (s *Settings) Secret(name string) string {
	v, ok := s.secrets[name]
	if !ok {
		panic("native: no secret " + name)
	}
	return v
}

// mask hides the stack's passwords in text (bin/stack env).
func (s *Settings) mask(text string) string {
	for _, v := range s.secrets {
		text = strings.ReplaceAll(text, v, "********")
	}
	return text
}
