// Package migrations embeds the versioned SQL that creates kvstack's schema
// and applies it, so that the binaries, cmd/migrate and the tests all run
// exactly the same statements.
//
// Files are named NNNN_description.sql; each is applied once, in version
// order, in its own transaction, and recorded in schema_migrations. Table
// names in the files are unqualified, so they land in the first schema of
// the connection's search_path.
package migrations

import (
	"cmp"
	"embed"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strconv"
	"strings"
)

//go:embed *.sql
var files embed.FS

// Migration is one versioned SQL file.
type Migration struct {
	Version int64
	Name    string // the file name without version prefix and extension
	SQL     string
}

// All returns the embedded migrations in version order. It fails when a
// file is misnamed or two files share a version, which a test catches
// before any binary ships.
func All() ([]Migration, error) {
	return load(files)
}

func load(fsys fs.FS) ([]Migration, error) {
	names, err := fs.Glob(fsys, "*.sql")
	if err != nil {
		return nil, fmt.Errorf("list migrations: %w", err)
	}
	ms := make([]Migration, 0, len(names))
	for _, file := range names {
		m, err := parseName(file)
		if err != nil {
			return nil, err
		}
		body, err := fs.ReadFile(fsys, file)
		if err != nil {
			return nil, fmt.Errorf("read migration %s: %w", file, err)
		}
		m.SQL = string(body)
		ms = append(ms, m)
	}
	slices.SortFunc(ms, func(a, b Migration) int { return cmp.Compare(a.Version, b.Version) })
	for i := 1; i < len(ms); i++ {
		if ms[i].Version == ms[i-1].Version {
			return nil, fmt.Errorf("migrations %s and %s share version %d", ms[i-1].Name, ms[i].Name, ms[i].Version)
		}
	}
	return ms, nil
}

// parseName splits "0001_create_kv_store.sql" into version 1 and name
// "create_kv_store".
func parseName(file string) (Migration, error) {
	base := strings.TrimSuffix(path.Base(file), ".sql")
	num, name, ok := strings.Cut(base, "_")
	if !ok || name == "" {
		return Migration{}, fmt.Errorf("migration %s: want NNNN_description.sql", file)
	}
	v, err := strconv.ParseInt(num, 10, 64)
	if err != nil || v <= 0 {
		return Migration{}, fmt.Errorf("migration %s: version %q is not a positive number", file, num)
	}
	return Migration{Version: v, Name: name}, nil
}
