package k8s

import (
	"maps"
	"regexp"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// Least privilege in PostgreSQL (issue 19 §3, docs/SECURITY.md): the API
// and the consumers connect as a login role of the Cluster's managed roles
// with no membership (kvstack_app), never as the owner, whose URI
// (Secret <cluster>-app) is the migrations Job's alone; the Job grants the
// app roles and the exporter's pg_monitor role what they need
// (KV_MIGRATE_APP_ROLES, KV_MIGRATE_MONITOR_ROLES), since it revokes
// CONNECT from PUBLIC: a role it does not list cannot connect.
func checkPrivilege(t testing.TB, m *manifests, s *sources) problems {
	var p problems
	for _, pg := range m.postgreses {
		bySecret := map[string]PostgresRole{}
		var monitors []string
		if pg.Spec.Managed != nil {
			for _, r := range pg.Spec.Managed.Roles {
				if r.PasswordSecret != nil && r.Login && r.Ensure != "absent" {
					bySecret[r.PasswordSecret.Name] = r
				}
				if r.Login && slices.Contains(r.InRoles, "pg_monitor") {
					monitors = append(monitors, r.Name)
				}
			}
		}
		var appRoles []string
		var migrate *kvContainer
		for _, k := range m.kvContainers() {
			e := envVar(k.c, "DATABASE_URL")
			if e == nil || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
				continue
			}
			if k.bin == "migrate" {
				migrate = &k
				continue
			}
			ref := e.ValueFrom.SecretKeyRef
			r, ok := bySecret[ref.Name]
			switch {
			case ref.Name == pg.Name+"-app":
				p.add("%s connects as the owner of Cluster %s's database (Secret %s): give it the app role", k, pg.Name, ref.Name)
			case !ok:
				p.add("%s: DATABASE_URL from Secret %s, no managed login role of Cluster %s", k, ref.Name, pg.Name)
			case len(r.InRoles) > 0:
				p.add("%s connects as %s, a member of %v: the app role needs no membership", k, r.Name, r.InRoles)
			default:
				if !slices.Contains(appRoles, r.Name) {
					appRoles = append(appRoles, r.Name)
				}
			}
		}
		if migrate == nil {
			p.add("no migrations Job connects to Cluster %s", pg.Name)
			continue
		}
		list := func(name string) []string {
			e := envVar(migrate.c, name)
			if e == nil {
				return nil
			}
			return strings.Split(e.Value, ",")
		}
		slices.Sort(appRoles)
		if got := slices.Sorted(slices.Values(list("KV_MIGRATE_APP_ROLES"))); !slices.Equal(got, appRoles) {
			p.add("%s: KV_MIGRATE_APP_ROLES %v, want the roles the API and the consumers connect as %v", migrate, got, appRoles)
		}
		for _, mon := range monitors {
			if !slices.Contains(list("KV_MIGRATE_MONITOR_ROLES"), mon) {
				p.add("%s: KV_MIGRATE_MONITOR_ROLES %v lacks %s, the exporter's role, which could then not connect", migrate, list("KV_MIGRATE_MONITOR_ROLES"), mon)
			}
		}
	}
	// Redis: the API and the consumers as an ACL user of their own, not
	// the default user (whose password is the CR's redisSecret), from the
	// nodes' aclfile, which docs/KUBERNETES.md makes: the default user
	// defined in it with a password (an aclfile makes Redis ignore
	// requirepass: else the default user would be open to all), the app's
	// limited to the cache's keys and denied every other command.
	// The exporter sidecar likewise, as a user of its own with the
	// statistics' commands alone (redisMonitorRules) and no key.
	type redisNode struct {
		name     string
		acl      *RedisACLConfig
		secret   *RedisSecret
		exporter *RedisExporter
	}
	var nodes []redisNode
	for _, r := range m.redises {
		nodes = append(nodes, redisNode{"Redis " + r.Name, r.Spec.ACL, r.Spec.KubernetesConfig.RedisSecret, r.Spec.RedisExporter})
	}
	for _, r := range m.redisClusters {
		nodes = append(nodes, redisNode{"RedisCluster " + r.Name, r.Spec.ACL, r.Spec.KubernetesConfig.RedisSecret, r.Spec.RedisExporter})
	}
	guide := string(readRepo(t, "docs/KUBERNETES.md"))
	for _, n := range nodes {
		if n.acl == nil || n.acl.Secret == nil || n.acl.Secret.SecretName == "" {
			p.add("%s: no ACL users: the clients use the default user, allowed every key and command", n.name)
			continue
		}
		line := regexp.MustCompile(`kubectl[^\n]*create secret generic ` + regexp.QuoteMeta(n.acl.Secret.SecretName) + ` [^\n]*--from-literal=user\.acl=[^\n]*`).FindString(guide)
		if line == "" {
			p.add("%s: docs/KUBERNETES.md does not create its ACL Secret %s (key user.acl)", n.name, n.acl.Secret.SecretName)
		} else if !strings.Contains(line, "user default on >") {
			p.add("%s: the ACL file of docs/KUBERNETES.md gives the default user no password: Redis ignores requirepass beside an aclfile", n.name)
		}
		for _, bin := range []string{"api", "consumer"} {
			k := m.mainContainer(bin)
			if k == nil {
				continue
			}
			user, pass := envVar(k.c, "REDIS_USERNAME"), envVar(k.c, "REDIS_PASSWORD")
			if user == nil || user.ValueFrom == nil || user.ValueFrom.SecretKeyRef == nil || pass == nil || pass.ValueFrom == nil || pass.ValueFrom.SecretKeyRef == nil {
				p.add("%s: REDIS_USERNAME and REDIS_PASSWORD not both from a Secret", k)
				continue
			}
			if n.secret != nil && n.secret.Name != nil && pass.ValueFrom.SecretKeyRef.Name == *n.secret.Name {
				p.add("%s: REDIS_PASSWORD from %s, the default user's", k, *n.secret.Name)
			}
			if user.ValueFrom.SecretKeyRef.Name != pass.ValueFrom.SecretKeyRef.Name {
				p.add("%s: REDIS_USERNAME from %s, REDIS_PASSWORD from %s: one user's Secret", k, user.ValueFrom.SecretKeyRef.Name, pass.ValueFrom.SecretKeyRef.Name)
			}
		}
		if n.exporter != nil && n.exporter.Enabled {
			p = append(p, checkRedisExporterUser(n.name, n.exporter, n.secret, line, guide)...)
		}
		app := regexp.MustCompile(`user kvstack_app on >%s ([^\n'\\]*)`).FindStringSubmatch(line)
		prefix := s.env["api"]["REDIS_KEY_PREFIX"]
		if app == nil {
			p.add("%s: the ACL file of docs/KUBERNETES.md defines no user kvstack_app", n.name)
		} else if rules := strings.Fields(strings.ReplaceAll(app[1], `\n`, " ")); !slices.Contains(rules, "~"+prefix+"*") || !slices.Contains(rules, "-@all") ||
			slices.ContainsFunc(rules, func(r string) bool { return r == "~*" || r == "allkeys" || r == "+@all" || r == "allcommands" }) {
			p.add("%s: kvstack_app's rules %v: want the cache's keys alone (~%s*) and -@all before the cache's commands", n.name, rules, prefix)
		}
	}

	// RabbitMQ: each process as a user of its own, never the operator's
	// default user (an administrator), with no tags and exactly the
	// permissions rabbitPermissions gives its role.
	want := rabbitPermissions(s)
	for _, r := range m.rabbitmqs {
		clients := map[string]string{} // role: the Secret of its URI
		for _, k := range m.kvContainers() {
			if k.bin == "migrate" || (!k.init && (k.bin == "api" || k.bin == "consumer")) {
				e := envVar(k.c, "RABBITMQ_URL")
				if e == nil || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
					p.add("%s: RABBITMQ_URL from no Secret", k)
					continue
				}
				clients[k.bin] = e.ValueFrom.SecretKeyRef.Name
			}
		}
		for _, ta := range m.triggerAuths {
			for _, ref := range ta.Spec.SecretTargetRef {
				if ref.Parameter == "host" {
					clients["keda"] = ref.Name
				}
			}
		}
		for _, role := range slices.Sorted(maps.Keys(want)) {
			secret, ok := clients[role]
			if !ok {
				p.add("%s: no RabbitMQ client in the release", role)
				continue
			}
			if secret == r.Name+rabbitmqSecretTail {
				p.add("%s connects to RabbitmqCluster %s as its default user, an administrator: give it a user of its own", role, r.Name)
				continue
			}
			var user *RabbitmqUser
			for _, u := range m.rabbitUsers {
				if u.Spec.ImportCredentialsSecret != nil && u.Spec.ImportCredentialsSecret.Name == secret && u.Spec.RabbitmqClusterReference.Name == r.Name {
					user = u
				}
			}
			if user == nil {
				p.add("%s: RabbitMQ URL from Secret %s, which no User of RabbitmqCluster %s imports", role, secret, r.Name)
				continue
			}
			if len(user.Spec.Tags) > 0 {
				p.add("User %s: tags %v, none needed", user.Name, user.Spec.Tags)
			}
			n := 0
			for _, pm := range m.rabbitPerms {
				if pm.Spec.UserReference == nil || pm.Spec.UserReference.Name != user.Name {
					continue
				}
				n++
				if pm.Spec.Vhost != "/" || pm.Spec.Permissions != want[role] {
					p.add("Permission %s: %+v on %s, want %+v on / (docs/SECURITY.md)", pm.Name, pm.Spec.Permissions, pm.Spec.Vhost, want[role])
				}
			}
			if n != 1 {
				p.add("User %s: %d Permissions, want one", user.Name, n)
			}
		}
	}
	return p
}

// rabbitPermissions are the configure, write and read permissions each
// RabbitMQ client needs on the vhost, from the queues' and the dead-letter
// exchange's names the binaries use (RabbitMQ's access control: a
// publish needs write on the exchange, amq.default for the default one; a
// consume or a get, read on the queue; a declare or a delete, configure
// on what it declares, and a queue with x-dead-letter-exchange also read
// on the queue and write on that exchange; a bind, write on the queue and
// read on the exchange; a passive declare, nothing).
func rabbitPermissions(s *sources) map[string]RabbitmqVhostPermissions {
	add, del := regexp.QuoteMeta(s.env["consumer"]["RABBITMQ_QUEUE_ADD"]), regexp.QuoteMeta(s.env["consumer"]["RABBITMQ_QUEUE_DEL"])
	dlx := regexp.QuoteMeta(s.env["migrate"]["RABBITMQ_DLX"])
	queues := "(" + add + "|" + del + ")"
	return map[string]RabbitmqVhostPermissions{
		// Publishes to the default exchange.
		"api": {Configure: "^$", Write: `^amq\.default$`, Read: "^$"},
		// Consumes the work queues.
		"consumer": {Configure: "^$", Write: "^$", Read: "^" + queues + "$"},
		// Declares the DLX, the work queues, their DLQs (bound to the DLX)
		// and, to convert a queue, <queue>.migrating; moves messages with
		// basic.get and publishes to the default exchange.
		"migrate": {
			Configure: "^(" + dlx + "|" + queues + `(\.dlq|\.migrating)?)$`,
			Write:     `^(amq\.default|` + dlx + "|" + queues + `\.dlq)$`,
			Read:      "^(" + dlx + "|" + queues + `(\.migrating)?)$`,
		},
		// Reads the work queues' lengths (passive declares): the vhost
		// alone.
		"keda": {Configure: "^$", Write: "^$", Read: "^$"},
	}
}

// redisMonitorRules are what the exporter's ACL user may be given: no key
// and no channel, every command denied but those redis_exporter runs to
// read a node's statistics (lab/native/engines gives the native stack's
// exporter the same).
var redisMonitorRules = []string{"resetkeys", "resetchannels", "-@all", "+ping", "+hello", "+auth", "+select",
	"+client|setname", "+client|list", "+info", "+config|get", "+cluster|info", "+slowlog", "+latency", "+dbsize", "+memory|stats"}

// checkRedisExporterUser wants the exporter sidecar of a Redis with ACL
// users to log in as a user of its own: REDIS_USER and REDIS_PASSWORD
// from one Secret that is not the default user's (the operator's
// REDIS_PASSWORD, which they come after), and that user defined in the
// guide's ACL file line with redisMonitorRules alone.
func checkRedisExporterUser(name string, e *RedisExporter, defaultSecret *RedisSecret, line, guide string) problems {
	var p problems
	var user, pass *corev1.EnvVar
	if e.Env != nil {
		for i, v := range *e.Env {
			switch v.Name {
			case "REDIS_USER":
				user = &(*e.Env)[i]
			case "REDIS_PASSWORD":
				pass = &(*e.Env)[i]
			}
		}
	}
	if user == nil || pass == nil {
		p.add("%s: its exporter logs in as the default user (the operator's REDIS_PASSWORD): want REDIS_USER and REDIS_PASSWORD of a monitoring user in redisExporter.env", name)
		return p
	}
	if user.ValueFrom == nil || user.ValueFrom.SecretKeyRef == nil || pass.ValueFrom == nil || pass.ValueFrom.SecretKeyRef == nil ||
		user.ValueFrom.SecretKeyRef.Name != pass.ValueFrom.SecretKeyRef.Name {
		p.add("%s: the exporter's REDIS_USER and REDIS_PASSWORD not both from one Secret", name)
		return p
	}
	if defaultSecret != nil && defaultSecret.Name != nil && pass.ValueFrom.SecretKeyRef.Name == *defaultSecret.Name {
		p.add("%s: the exporter's REDIS_PASSWORD from %s, the default user's", name, *defaultSecret.Name)
	}
	secret := user.ValueFrom.SecretKeyRef.Name
	made := regexp.MustCompile(`kubectl[^\n]*create secret generic ` + regexp.QuoteMeta(secret) + ` --from-literal=username=([a-z_]+) `).FindStringSubmatch(guide)
	if made == nil {
		p.add("%s: docs/KUBERNETES.md does not create the exporter's Secret %s (username, password)", name, secret)
		return p
	}
	monitor := made[1]
	if monitor == "default" {
		p.add("%s: the exporter's Secret %s names the default user", name, secret)
		return p
	}
	rules := regexp.MustCompile(`user ` + regexp.QuoteMeta(monitor) + ` on >%s ([^\n'\\]*)`).FindStringSubmatch(line)
	if rules == nil {
		p.add("%s: the ACL file of docs/KUBERNETES.md defines no user %s, the exporter's", name, monitor)
		return p
	}
	for _, r := range strings.Fields(strings.ReplaceAll(rules[1], `\n`, " ")) {
		if !slices.Contains(redisMonitorRules, r) {
			p.add("%s: the exporter's user %s has rule %q: want only %v (the statistics, no key)", name, monitor, r, redisMonitorRules)
		}
	}
	return p
}
