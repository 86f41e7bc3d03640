package auth

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"unicode"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// Policy maps roles to rights on key prefixes, as Consul's key_prefix rules
// and etcd's key ranges do. A token's roles are the values of the claims
// that RoleClaims name; its rights are the union of its roles' rules. A role
// the policy does not name grants nothing (a token may carry roles for other
// services).
//
// The file is YAML (JSON, being YAML, also loads): operators keep a reason
// beside each rule as a comment, and it mounts as a ConfigMap like the rest
// of the deployment's configuration. It is decoded strictly: an unknown or
// repeated field, a missing key_prefix, an unknown right or a second
// document fails the load, and with it the start.
type Policy struct {
	roleClaims [][]string
	roles      map[string]Rights
}

// policyFile is the file's shape.
type policyFile struct {
	// RoleClaims are the claims that hold a token's roles, each a path of
	// member names into the token's claims (["realm_access", "roles"] is
	// Keycloak's). A string value is split on spaces (an OAuth scope); an
	// array of strings is taken whole.
	RoleClaims [][]string `yaml:"role_claims"`
	// Roles maps each role to its rules.
	Roles map[string][]ruleFile `yaml:"roles"`
}

type ruleFile struct {
	// KeyPrefix is required: "" (every key) must be written out.
	KeyPrefix *string  `yaml:"key_prefix"`
	Rights    []string `yaml:"rights"`
}

// maxPrefixBytes bounds a rule's prefix: kv's default key limit, which no
// longer prefix could match anyway.
const maxPrefixBytes = 512

// LoadPolicy reads and checks the policy file at path.
func LoadPolicy(path string) (*Policy, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("auth policy: %w", err)
	}
	p, err := ParsePolicy(raw)
	if err != nil {
		return nil, fmt.Errorf("auth policy %s: %w", path, err)
	}
	return p, nil
}

// ParsePolicy decodes and checks a policy.
func ParsePolicy(raw []byte) (*Policy, error) {
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	var f policyFile
	if err := dec.Decode(&f); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("empty: it must name role_claims and roles")
		}
		return nil, err
	}
	var extra any
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, errors.New("more than one YAML document")
	}
	return f.check()
}

func (f policyFile) check() (*Policy, error) {
	if len(f.RoleClaims) == 0 {
		return nil, errors.New("role_claims: at least one claim must hold roles, e.g. [[roles], [scope]]")
	}
	for i, path := range f.RoleClaims {
		if len(path) == 0 || containsEmpty(path) {
			return nil, fmt.Errorf("role_claims[%d]: a path of one or more non-empty claim names, e.g. [roles]", i)
		}
	}
	if len(f.Roles) == 0 {
		return nil, errors.New("roles: no role is defined")
	}
	p := &Policy{roleClaims: f.RoleClaims, roles: make(map[string]Rights, len(f.Roles))}
	for name, rules := range f.Roles {
		if name == "" {
			return nil, errors.New("roles: a role has an empty name")
		}
		if len(rules) == 0 {
			return nil, fmt.Errorf("roles.%s: no rule; remove the role or give it one", name)
		}
		var on [rightCount][]string
		for i, rule := range rules {
			where := fmt.Sprintf("roles.%s[%d]", name, i)
			if rule.KeyPrefix == nil {
				return nil, fmt.Errorf(`%s: key_prefix is required ("" for every key)`, where)
			}
			if err := checkPrefix(*rule.KeyPrefix); err != nil {
				return nil, fmt.Errorf("%s: key_prefix %w", where, err)
			}
			if len(rule.Rights) == 0 {
				return nil, fmt.Errorf("%s: rights: at least one of read, write, list", where)
			}
			var seen [rightCount]bool
			for _, s := range rule.Rights {
				r, ok := parseRight(s)
				switch {
				case !ok:
					return nil, fmt.Errorf("%s: rights: %q is not read, write or list", where, s)
				case seen[r]:
					return nil, fmt.Errorf("%s: rights: %q twice", where, s)
				}
				seen[r] = true
				on[r] = append(on[r], *rule.KeyPrefix)
			}
		}
		p.roles[name] = newRights(on)
	}
	return p, nil
}

func containsEmpty(ss []string) bool {
	for _, s := range ss {
		if s == "" {
			return true
		}
	}
	return false
}

// checkPrefix applies the key rule (kv.Limits.ValidateKey) to a prefix, the
// empty prefix aside: a prefix no key can have is a mistake.
func checkPrefix(p string) error {
	if len(p) > maxPrefixBytes {
		return fmt.Errorf("longer than %d bytes", maxPrefixBytes)
	}
	if !utf8.ValidString(p) {
		return errors.New("is not valid UTF-8")
	}
	for _, r := range p {
		if unicode.IsControl(r) {
			return fmt.Errorf("contains control character %U", r)
		}
	}
	return nil
}

// Roles returns the roles a token's claims carry, in claim order.
func (p *Policy) Roles(claims map[string]any) []string {
	var roles []string
	for _, path := range p.roleClaims {
		switch v := lookup(claims, path).(type) {
		case string:
			roles = append(roles, strings.Fields(v)...)
		case []any:
			for _, e := range v {
				if s, ok := e.(string); ok {
					roles = append(roles, s)
				}
			}
		}
	}
	return roles
}

func lookup(claims map[string]any, path []string) any {
	var v any = claims
	for _, name := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[name]
	}
	return v
}

// Rights returns what a token with these claims may do: the union of its
// known roles' rules.
func (p *Policy) Rights(claims map[string]any) Rights {
	var grants []Rights
	for _, role := range p.Roles(claims) {
		if rs, ok := p.roles[role]; ok {
			grants = append(grants, rs)
		}
	}
	return unionRights(grants)
}
