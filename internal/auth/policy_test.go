package auth

import (
	"os"
	"slices"
	"strings"
	"testing"
)

const testPolicy = `
role_claims: [[roles], [scope], [realm_access, roles]]
roles:
  admin:
    - key_prefix: ""
      rights: [read, write, list]
  team-a:
    - key_prefix: "team-a/"
      rights: [read, write, list]
  audit:
    - key_prefix: ""
      rights: [list]
    - key_prefix: "logs/"
      rights: [read]
  "kv:read":
    - key_prefix: "pub/"
      rights: [read]
`

func mustPolicy(t testing.TB, src string) *Policy {
	t.Helper()
	p, err := ParsePolicy([]byte(src))
	if err != nil {
		t.Fatalf("ParsePolicy: %v", err)
	}
	return p
}

func TestParsePolicyRefuses(t *testing.T) {
	for _, tc := range []struct{ name, src, want string }{
		{"empty", "", "empty"},
		{"comments only", "# nothing\n", "empty"},
		{"unknown top field", testPolicy + "extra: 1\n", "field extra not found"},
		{"unknown rule field", "role_claims: [[roles]]\nroles:\n  a:\n    - key_prefix: \"\"\n      rights: [read]\n      policy: write\n", "field policy not found"},
		{"repeated role", "role_claims: [[roles]]\nroles:\n  a: [{key_prefix: \"\", rights: [read]}]\n  a: [{key_prefix: \"\", rights: [write]}]\n", "already defined"},
		{"missing key_prefix", "role_claims: [[roles]]\nroles:\n  a: [{rights: [read]}]\n", "key_prefix is required"},
		{"unknown right", "role_claims: [[roles]]\nroles:\n  a: [{key_prefix: x, rights: [reed]}]\n", `"reed" is not read, write or list`},
		{"right twice", "role_claims: [[roles]]\nroles:\n  a: [{key_prefix: x, rights: [read, read]}]\n", `"read" twice`},
		{"no rights", "role_claims: [[roles]]\nroles:\n  a: [{key_prefix: x, rights: []}]\n", "at least one of read"},
		{"rights as scalar", "role_claims: [[roles]]\nroles:\n  a: [{key_prefix: x, rights: read}]\n", "cannot unmarshal"},
		{"role without rules", "role_claims: [[roles]]\nroles:\n  a: []\n", "no rule"},
		{"no roles", "role_claims: [[roles]]\nroles: {}\n", "no role is defined"},
		{"no role_claims", "roles:\n  a: [{key_prefix: x, rights: [read]}]\n", "role_claims"},
		{"empty claim path", "role_claims: [[]]\nroles:\n  a: [{key_prefix: x, rights: [read]}]\n", "role_claims[0]"},
		{"claim path as string", "role_claims: [roles]\nroles:\n  a: [{key_prefix: x, rights: [read]}]\n", "cannot unmarshal"},
		{"control character in prefix", "role_claims: [[roles]]\nroles:\n  a: [{key_prefix: \"a\\tb\", rights: [read]}]\n", "control character"},
		{"two documents", testPolicy + "---\n" + testPolicy, "more than one YAML document"},
		{"not YAML", "{", "did not find"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParsePolicy([]byte(tc.src))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("ParsePolicy = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// A JSON policy loads too: JSON is YAML.
func TestParsePolicyJSON(t *testing.T) {
	p := mustPolicy(t, `{"role_claims": [["roles"]], "roles": {"admin": [{"key_prefix": "", "rights": ["read", "write", "list"]}]}}`)
	rs := p.Rights(map[string]any{"roles": []any{"admin"}})
	if !rs.Allows(Write, "any") {
		t.Fatal("admin from a JSON policy may not write")
	}
}

// The policy the repository ships (and the stacks mount) loads.
func TestDefaultPolicyLoads(t *testing.T) {
	p, err := LoadPolicy("../../deploy/auth/policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	admin := p.Rights(map[string]any{"roles": []any{"admin"}})
	for _, r := range []Right{Read, Write, List} {
		if !admin.Allows(r, "k") {
			t.Errorf("admin lacks %v", r)
		}
	}
	reader := p.Rights(map[string]any{"roles": []any{"reader"}})
	if reader.Allows(Write, "k") || !reader.Allows(Read, "k") || len(reader.Listable()) == 0 {
		t.Errorf("reader: write %v, read %v, listable %q", reader.Allows(Write, "k"), reader.Allows(Read, "k"), reader.Listable())
	}
	scoped := p.Rights(map[string]any{"scope": "openid kv:read kv:write"})
	if !scoped.Allows(Read, "k") || !scoped.Allows(Write, "k") || scoped.Listable() != nil {
		t.Errorf("scopes kv:read kv:write: read %v, write %v, listable %q", scoped.Allows(Read, "k"), scoped.Allows(Write, "k"), scoped.Listable())
	}
}

func TestLoadPolicyNamesTheFile(t *testing.T) {
	path := t.TempDir() + "/policy.yaml"
	if err := os.WriteFile(path, []byte("roles: 3\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := LoadPolicy(path)
	if err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("LoadPolicy = %v, want an error naming %s", err, path)
	}
	if _, err := LoadPolicy(path + ".absent"); err == nil {
		t.Fatal("LoadPolicy of a missing file succeeded")
	}
}

func TestPolicyRights(t *testing.T) {
	p := mustPolicy(t, testPolicy)
	for _, tc := range []struct {
		name     string
		claims   map[string]any
		allowed  map[Right][]string
		denied   map[Right][]string
		listable []string
	}{
		{
			name:     "admin",
			claims:   map[string]any{"roles": []any{"admin"}},
			allowed:  map[Right][]string{Read: {"x", "team-a/1"}, Write: {"x"}, List: {"x"}},
			listable: []string{""},
		},
		{
			name:     "prefix role",
			claims:   map[string]any{"roles": []any{"team-a"}},
			allowed:  map[Right][]string{Read: {"team-a/1", "team-a/"}, Write: {"team-a/x/y"}},
			denied:   map[Right][]string{Read: {"team-a", "team-b/1", "TEAM-A/1"}, Write: {"x"}},
			listable: []string{"team-a/"},
		},
		{
			name:     "list needs read to show a key",
			claims:   map[string]any{"roles": []any{"audit"}},
			allowed:  map[Right][]string{List: {"anything"}, Read: {"logs/1"}},
			denied:   map[Right][]string{Read: {"other"}, Write: {"logs/1"}},
			listable: []string{"logs/"},
		},
		{
			name:     "union of roles, unknown roles ignored",
			claims:   map[string]any{"roles": []any{"team-a", "nobody", 7, "audit"}},
			allowed:  map[Right][]string{Read: {"team-a/1", "logs/1"}, Write: {"team-a/1"}},
			denied:   map[Right][]string{Write: {"logs/1"}},
			listable: []string{"logs/", "team-a/"},
		},
		{
			name:    "scope string split on spaces",
			claims:  map[string]any{"scope": "openid  kv:read"},
			allowed: map[Right][]string{Read: {"pub/1"}},
			denied:  map[Right][]string{Read: {"priv/1"}, List: {"pub/1"}},
		},
		{
			name:     "nested claim (Keycloak realm roles)",
			claims:   map[string]any{"realm_access": map[string]any{"roles": []any{"team-a"}}},
			allowed:  map[Right][]string{Write: {"team-a/1"}},
			listable: []string{"team-a/"},
		},
		{
			name:   "claims of the wrong type grant nothing",
			claims: map[string]any{"roles": "team-a-but-not-a-list-member", "realm_access": "admin", "scope": 3},
			denied: map[Right][]string{Read: {"team-a/1", "x"}},
		},
		{
			name:   "no claims",
			claims: map[string]any{},
			denied: map[Right][]string{Read: {"x"}, Write: {"x"}, List: {"x"}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rs := p.Rights(tc.claims)
			for r, keys := range tc.allowed {
				for _, k := range keys {
					if !rs.Allows(r, k) {
						t.Errorf("%v on %q denied, want allowed", r, k)
					}
				}
			}
			for r, keys := range tc.denied {
				for _, k := range keys {
					if rs.Allows(r, k) {
						t.Errorf("%v on %q allowed, want denied", r, k)
					}
				}
			}
			if got := rs.Listable(); !slices.Equal(got, tc.listable) {
				t.Errorf("Listable = %q, want %q", got, tc.listable)
			}
		})
	}
}
