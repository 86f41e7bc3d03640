package k8s

import (
	"path"
	"strings"

	"testing"
)

func init() { checks["auth"] = checkAuth }

// Every variant turns auth on: the API has an issuer, a key set (a JWKS URL
// or a mounted Secret's file) and the policy file in a mounted ConfigMap
// holding the repository's deploy/auth/policy.yaml.
func checkAuth(t testing.TB, m *manifests, s *sources) problems {
	var p problems
	k := m.mainContainer("api")
	if k == nil {
		p.add("no API Deployment")
		return p
	}
	value := func(name string) string {
		if e := envVar(k.c, name); e != nil {
			return e.Value
		}
		return ""
	}
	if value("KV_AUTH") != "on" || value("KV_AUTH_ISSUER") == "" {
		p.add("%s: KV_AUTH=%q, KV_AUTH_ISSUER=%q; want auth on with an issuer", k, value("KV_AUTH"), value("KV_AUTH_ISSUER"))
	}
	// mounted returns the volume whose mount holds file.
	mounted := func(file string) string {
		for _, vm := range k.c.VolumeMounts {
			if path.Dir(file) == strings.TrimSuffix(vm.MountPath, "/") {
				return vm.Name
			}
		}
		return ""
	}
	volume := func(name string) (secret, configMap string) {
		for _, v := range k.pod.Volumes {
			if v.Name != name {
				continue
			}
			if v.Secret != nil {
				secret = v.Secret.SecretName
			}
			if v.ConfigMap != nil {
				configMap = v.ConfigMap.Name
			}
		}
		return
	}
	switch jwks := value("KV_AUTH_JWKS_FILE"); {
	case value("KV_AUTH_JWKS_URL") != "" && jwks == "":
	case jwks != "":
		if secret, _ := volume(mounted(jwks)); secret == "" {
			p.add("%s: KV_AUTH_JWKS_FILE %s is in no mounted Secret", k, jwks)
		}
	default:
		p.add("%s: neither KV_AUTH_JWKS_URL nor KV_AUTH_JWKS_FILE", k)
	}
	policy := value("KV_AUTH_POLICY_FILE")
	_, cm := volume(mounted(policy))
	found := false
	for _, c := range m.configMaps {
		if c.Name == cm {
			found = true
			if c.Data[path.Base(policy)] != string(readRepo(t, "deploy/auth/policy.yaml")) {
				p.add("ConfigMap %s's %s is not deploy/auth/policy.yaml", cm, path.Base(policy))
			}
		}
	}
	if !found {
		p.add("%s: KV_AUTH_POLICY_FILE %s is in no ConfigMap of the chart (%q)", k, policy, cm)
	}
	return p
}
