package native

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
)

// Assignment is one NAME=VALUE line of an env file.
type Assignment struct {
	Name, Value string
}

var envName = regexp.MustCompile(`^[A-Z][A-Z0-9_]*$`)

// ParseEnvFile reads a file like stack.env: one NAME=VALUE a line, the
// value taken as written (no quotes, no expansion), blank lines and lines
// starting with '#' ignored. Anything else is an error naming the line, and
// so is a name given twice.
func ParseEnvFile(r io.Reader) ([]Assignment, error) {
	var out []Assignment
	seen := map[string]int{}
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, value, ok := strings.Cut(line, "=")
		if !ok || !envName.MatchString(name) {
			return nil, fmt.Errorf("line %d: %q is not NAME=VALUE", n, line)
		}
		if first, dup := seen[name]; dup {
			return nil, fmt.Errorf("line %d: %s already set on line %d", n, name, first)
		}
		seen[name] = n
		out = append(out, Assignment{Name: name, Value: value})
	}
	return out, sc.Err()
}

// ReadEnvFile is ParseEnvFile on the file at path.
func ReadEnvFile(path string) ([]Assignment, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	as, err := ParseEnvFile(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return as, nil
}

// environMap turns os.Environ()-style entries into a map; a later entry
// wins, as exec does.
func environMap(environ []string) map[string]string {
	m := make(map[string]string, len(environ))
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok {
			m[k] = v
		}
	}
	return m
}
