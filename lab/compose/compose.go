// Package compose makes what docker compose needs beside the repository
// (`make compose-secrets`): the secrets in the project's .env, the
// engines' certificates signed by the stack's local CA (lab/native/tls.go),
// and the engines' user lists rendered from those secrets, RabbitMQ's
// definitions file and Redis's ACL file, with hashed passwords. Nothing it
// writes is in the repository; deploy/composetest runs what it writes on
// real engines.
package compose

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/kvstack/kvstack/internal/engine"
	"github.com/kvstack/kvstack/lab/native"
	"github.com/kvstack/kvstack/lab/native/engines"
)

// Secrets are the variables of .env that compose requires and this
// package fills when empty: random, 32 bytes in hex (letters and digits,
// safe in a URL).
var Secrets = []string{
	// The image's superuser, postgres: no service connects as it.
	"POSTGRES_SUPERUSER_PASSWORD",
	// kvstack, the owner of the database: migrate alone.
	"POSTGRES_PASSWORD",
	// kvstack_app: the API replicas and the consumers.
	"POSTGRES_APP_PASSWORD",
	// kvstack_monitor (pg_monitor): the exporter.
	"POSTGRES_MONITOR_PASSWORD",
	// kvstack, the topology's owner (not an administrator): migrate alone.
	"RABBITMQ_PASSWORD",
	// kvstack_api (publish only), kvstack_consumer (consume only).
	"RABBITMQ_API_PASSWORD",
	"RABBITMQ_CONSUMER_PASSWORD",
	// kvstack_app and kvstack_monitor, Redis's ACL users.
	"REDIS_APP_PASSWORD",
	"REDIS_MONITOR_PASSWORD",
	"GRAFANA_ADMIN_PASSWORD",
	"KV_MESSAGE_KEYS",
	// docker-compose.ha.yml only: the RabbitMQ nodes' Erlang cookie, the
	// PostgreSQL standby's replication role, the user of Patroni's REST
	// API for its unsafe endpoints (switchover, restart, PATCH /config).
	"RABBITMQ_ERLANG_COOKIE",
	"POSTGRES_REPLICATION_PASSWORD",
	"PATRONI_API_PASSWORD",
	// The Redis Cluster's replicas' user (kvstack_replica, FileSecrets),
	// and the one-shot's that forms the cluster (kvstack_cluster).
	"REDIS_REPLICA_PASSWORD",
	"REDIS_CLUSTER_PASSWORD",
}

// FileSecrets are the Secrets no compose file names: only the files
// Render writes hold them (the Redis Cluster's replication user's, in
// RedisReplicationFile, never in a container's environment).
var FileSecrets = []string{"REDIS_REPLICA_PASSWORD"}

// The users and roles of the engines in compose (docs/SECURITY.md).
const (
	PostgresOwner    = "kvstack"
	PostgresApp      = "kvstack_app"
	PostgresMonitor  = "kvstack_monitor"
	RabbitMQOwner    = "kvstack"
	RabbitMQAPI      = "kvstack_api"
	RabbitMQConsumer = "kvstack_consumer"
	RedisApp         = "kvstack_app"
	RedisMonitor     = "kvstack_monitor"
	// docker-compose.ha.yml's Redis Cluster's own: its replicas stream
	// from their masters as RedisReplica, and the one-shot that forms the
	// cluster (redis-cli --cluster create) runs as RedisClusterAdmin.
	RedisReplica      = "kvstack_replica"
	RedisClusterAdmin = "kvstack_cluster"
)

// Files in Dir(s): the engines' certificates and keys (tls/ENGINE.pem,
// tls/ENGINE-key.pem), RabbitMQ's definitions, Redis's ACL file. All
// mode 0600: compose mounts them where the engine's start copies them
// for its user (deploy/compose/engine-files.sh).
const (
	RabbitMQDefinitionsFile = "rabbitmq-definitions.json"
	RedisACLFile            = "redis-users.acl"
	// docker-compose.ha.yml's Redis Cluster: its ACL file, and the
	// configuration its nodes include for their replication user.
	RedisClusterACLFile  = "redis-cluster-users.acl"
	RedisReplicationFile = "redis-replication.conf"
)

// EngineHosts are the names each engine's certificate is valid for: its
// service in docker-compose.yml and its nodes' in docker-compose.ha.yml
// (deploy/composetest checks that they cover every host a client dials).
var EngineHosts = map[string][]string{
	"postgres": {"postgres", "postgres1", "postgres2"},
	"redis":    {"redis", "redis1", "redis2", "redis3", "redis4", "redis5", "redis6"},
	"rabbitmq": {"rabbitmq", "rabbitmq1", "rabbitmq2", "rabbitmq3"},
	// docker-compose.ha.yml's etcd members (Patroni's DCS).
	"etcd": {"etcd1", "etcd2", "etcd3"},
}

// Dir is where the generated files are: KV_STACK_DIR/compose.
func Dir(s *native.Settings) string { return filepath.Join(s.Dir, "compose") }

// Make is `make compose-secrets`: the stack's CA and edge certificate
// (make tls), its token key's JWKS (make token), the secrets of envFile
// (made from example when missing), then the engines' files in Dir(s).
// What exists and is current is kept; it prints what it did to log.
func Make(s *native.Settings, envFile, example string, log func(format string, args ...any)) error {
	if _, err := native.EdgeCerts(s); err != nil {
		return err
	}
	if _, err := native.SigningKey(s); err != nil {
		return err
	}
	env, filled, err := FillEnv(envFile, example)
	if err != nil {
		return err
	}
	for _, name := range filled {
		log("%s: %s made", envFile, name)
	}
	made, err := Render(s.Root, s.TLSDir(), Dir(s), env, time.Now())
	if err != nil {
		return err
	}
	for _, f := range made {
		log("%s made", f)
	}
	log("compose's secrets are in %s, the engines' files in %s: docker compose up", envFile, Dir(s))
	return nil
}

var envLine = regexp.MustCompile(`^([A-Z_][A-Z0-9_]*)=(.*)$`)

// FillEnv gives every empty or missing variable of Secrets in envFile
// (example's copy when it does not exist) a random value, leaving the
// others as they are, and returns the file's variables and those it
// filled. The file is mode 0600.
func FillEnv(envFile, example string) (env map[string]string, filled []string, err error) {
	text, err := os.ReadFile(envFile)
	if errors.Is(err, fs.ErrNotExist) {
		text, err = os.ReadFile(example)
	}
	if err != nil {
		return nil, nil, err
	}
	env = map[string]string{}
	var out bytes.Buffer
	sc := bufio.NewScanner(bytes.NewReader(text))
	for sc.Scan() {
		line := sc.Text()
		if m := envLine.FindStringSubmatch(line); m != nil {
			name, value := m[1], m[2]
			if value == "" && slices.Contains(Secrets, name) {
				value = random()
				line = name + "=" + value
				filled = append(filled, name)
			}
			env[name] = value
		}
		out.WriteString(line + "\n")
	}
	if err := sc.Err(); err != nil {
		return nil, nil, err
	}
	for _, name := range Secrets {
		if _, ok := env[name]; !ok {
			env[name] = random()
			fmt.Fprintf(&out, "%s=%s\n", name, env[name])
			filled = append(filled, name)
		}
	}
	if len(filled) > 0 || !bytes.Equal(out.Bytes(), text) {
		if err := os.WriteFile(envFile, out.Bytes(), 0o600); err != nil {
			return nil, nil, err
		}
	}
	return env, filled, os.Chmod(envFile, 0o600)
}

func random() string {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b[:])
}

// Render writes into dir the engines' certificates, signed by the CA of
// caDir (made when missing, due or not for EngineHosts), and the users'
// files from env's secrets (always, so that a changed password is
// there at the engines' next start). It returns the files it wrote.
func Render(root, caDir, dir string, env map[string]string, now time.Time) ([]string, error) {
	if err := os.MkdirAll(filepath.Join(dir, "tls"), 0o700); err != nil {
		return nil, err
	}
	var made []string
	for _, name := range slices.Sorted(maps.Keys(EngineHosts)) {
		cert := filepath.Join(dir, "tls", name+".pem")
		ok, err := EngineCert(caDir, cert, filepath.Join(dir, "tls", name+"-key.pem"), EngineHosts[name], now)
		if err != nil {
			return nil, err
		}
		if ok {
			made = append(made, cert)
		}
	}
	defs, err := RabbitMQDefinitions(env)
	if err != nil {
		return nil, err
	}
	acl, err := RedisACL(root, env)
	if err != nil {
		return nil, err
	}
	clusterACL, err := RedisClusterACL(root, env)
	if err != nil {
		return nil, err
	}
	replication := "masteruser " + RedisReplica + "\nmasterauth " + env["REDIS_REPLICA_PASSWORD"] + "\n"
	for file, text := range map[string][]byte{RabbitMQDefinitionsFile: defs, RedisACLFile: []byte(acl),
		RedisClusterACLFile: []byte(clusterACL), RedisReplicationFile: []byte(replication)} {
		path := filepath.Join(dir, file)
		if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, text) {
			continue
		}
		if err := os.WriteFile(path, text, 0o600); err != nil {
			return nil, err
		}
		made = append(made, path)
	}
	slices.Sort(made)
	return made, nil
}

// EngineCert makes certFile and keyFile, a server certificate for hosts
// signed by the CA of caDir (native.CAFile, native.CAKeyFile), unless the
// pair there is current: it chains to that CA, covers every host and has
// more than 30 days left. made says it was (re)made: restart the engine.
func EngineCert(caDir, certFile, keyFile string, hosts []string, now time.Time) (made bool, err error) {
	pair, err := tls.LoadX509KeyPair(filepath.Join(caDir, native.CAFile), filepath.Join(caDir, native.CAKeyFile))
	if err != nil {
		return false, fmt.Errorf("the stack's CA (make tls): %w", err)
	}
	ca, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return false, err
	}
	caKey, ok := pair.PrivateKey.(*ecdsa.PrivateKey)
	if !ok {
		return false, fmt.Errorf("%s is not an ECDSA key", native.CAKeyFile)
	}
	if current(ca, certFile, keyFile, hosts, now) {
		return false, nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return false, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return false, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{Organization: []string{"kvstack compose"}, CommonName: hosts[0]},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(397 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		// Client auth too: a Redis Cluster's nodes and RabbitMQ's dial
		// their peers with it.
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	// A host that is an address is the certificate's as one (an IP SAN,
	// which a client dialling the address checks), a name as a name.
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return false, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return false, err
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return false, err
	}
	return true, os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
}

func current(ca *x509.Certificate, certFile, keyFile string, hosts []string, now time.Time) bool {
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return false
	}
	cert, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil || cert.NotAfter.Sub(now) < 30*24*time.Hour {
		return false
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	for _, h := range hosts {
		if _, err := cert.Verify(x509.VerifyOptions{DNSName: h, Roots: roots, CurrentTime: now}); err != nil {
			return false
		}
	}
	return true
}

// rabbitMQUser is a user of RabbitMQ's definitions file, its password
// hashed as RabbitMQ hashes it (rabbit_password_hashing_sha256: base64 of
// a 4-byte salt and SHA-256 of the salt and the password).
type rabbitMQUser struct {
	Name             string   `json:"name"`
	PasswordHash     string   `json:"password_hash"`
	HashingAlgorithm string   `json:"hashing_algorithm"`
	Tags             []string `json:"tags"`
}

type rabbitMQPermission struct {
	User      string `json:"user"`
	Vhost     string `json:"vhost"`
	Configure string `json:"configure"`
	Write     string `json:"write"`
	Read      string `json:"read"`
}

// RabbitMQUsers are compose's RabbitMQ users and their permissions on
// vhost /: migrate's, which declares the topology (no administrator
// tag: it cannot manage users or other vhosts), and the same
// publish-only and consume-only users as the native stack's
// (engines.ProvisionRabbitMQ).
func RabbitMQUsers(env map[string]string) []engine.User {
	return []engine.User{
		{Name: RabbitMQOwner, Password: env["RABBITMQ_PASSWORD"], Configure: ".*", Write: ".*", Read: ".*"},
		{Name: RabbitMQAPI, Password: env["RABBITMQ_API_PASSWORD"], Configure: "^$", Write: `^amq\.default$`, Read: "^$"},
		{Name: RabbitMQConsumer, Password: env["RABBITMQ_CONSUMER_PASSWORD"], Configure: "^$", Write: "^$", Read: "^(add_key|del_key)$"},
	}
}

// RabbitMQDefinitions is the definitions file RabbitMQ imports at its
// start (deploy/compose/rabbitmq.conf): vhost / and RabbitMQUsers, and no
// other user, so that the image makes no default user (guest).
func RabbitMQDefinitions(env map[string]string) ([]byte, error) {
	defs := struct {
		Users       []rabbitMQUser       `json:"users"`
		Vhosts      []map[string]string  `json:"vhosts"`
		Permissions []rabbitMQPermission `json:"permissions"`
	}{Vhosts: []map[string]string{{"name": "/"}}}
	for _, u := range RabbitMQUsers(env) {
		if u.Password == "" {
			return nil, fmt.Errorf("the RabbitMQ user %s has no password (run make compose-secrets)", u.Name)
		}
		salt := make([]byte, 4)
		if _, err := rand.Read(salt); err != nil {
			return nil, err
		}
		sum := sha256.Sum256(append(slices.Clone(salt), u.Password...))
		defs.Users = append(defs.Users, rabbitMQUser{Name: u.Name, Tags: []string{},
			PasswordHash: base64.StdEncoding.EncodeToString(append(salt, sum[:]...)), HashingAlgorithm: "rabbit_password_hashing_sha256"})
		defs.Permissions = append(defs.Permissions, rabbitMQPermission{User: u.Name, Vhost: "/", Configure: u.Configure, Write: u.Write, Read: u.Read})
	}
	b, err := json.MarshalIndent(defs, "", "  ")
	return append(b, '\n'), err
}

// RedisUsers are compose's Redis ACL users: those of the native stack's own
// Redis (engines.RedisUsers, the same rules) with compose's passwords.
func RedisUsers(root string, env map[string]string) ([]engine.RedisUser, error) {
	s, err := native.Load(root, []string{
		"REDIS_USERNAME=" + RedisApp, "REDIS_PASSWORD=" + env["REDIS_APP_PASSWORD"],
		"KV_REDIS_EXPORTER_USERNAME=" + RedisMonitor, "KV_REDIS_EXPORTER_PASSWORD=" + env["REDIS_MONITOR_PASSWORD"],
		// Settings need one; nothing here reads it.
		"KV_MESSAGE_KEYS=" + strings.Repeat("0", 64),
	})
	if err != nil {
		return nil, err
	}
	users := engines.RedisUsers(s)
	for _, u := range users {
		if u.Password == "" {
			return nil, fmt.Errorf("the Redis user %s has no password (run make compose-secrets)", u.Name)
		}
	}
	return users, nil
}

// RedisClusterUsers are the users of docker-compose.ha.yml's Redis
// Cluster: RedisUsers, the replicas' (the replication protocol alone,
// no key) and the one-shot's (the CLUSTER commands that form the
// cluster, no key).
func RedisClusterUsers(root string, env map[string]string) ([]engine.RedisUser, error) {
	users, err := RedisUsers(root, env)
	if err != nil {
		return nil, err
	}
	users = append(users,
		engine.RedisUser{Name: RedisReplica, Password: env["REDIS_REPLICA_PASSWORD"],
			Rules: []string{"resetkeys", "resetchannels", "-@all", "+psync", "+replconf", "+ping"}},
		engine.RedisUser{Name: RedisClusterAdmin, Password: env["REDIS_CLUSTER_PASSWORD"],
			Rules: []string{"resetkeys", "resetchannels", "-@all", "+ping", "+hello", "+auth", "+info", "+cluster", "+config|get"}})
	for _, u := range users {
		if u.Password == "" {
			return nil, fmt.Errorf("the Redis user %s has no password (run make compose-secrets)", u.Name)
		}
	}
	return users, nil
}

// RedisClusterACL is the ACL file of docker-compose.ha.yml's Redis
// Cluster: as RedisACL's, with RedisClusterUsers.
func RedisClusterACL(root string, env map[string]string) (string, error) {
	users, err := RedisClusterUsers(root, env)
	if err != nil {
		return "", err
	}
	return aclText(users), nil
}

// RedisACL is Redis's ACL file (aclfile): the default user off, with no
// password and no right, and RedisUsers, each password as its SHA-256.
func RedisACL(root string, env map[string]string) (string, error) {
	users, err := RedisUsers(root, env)
	if err != nil {
		return "", err
	}
	return aclText(users), nil
}

func aclText(users []engine.RedisUser) string {
	var b strings.Builder
	b.WriteString("user default off resetpass resetkeys resetchannels -@all\n")
	for _, u := range users {
		sum := sha256.Sum256([]byte(u.Password))
		fmt.Fprintf(&b, "user %s reset on #%s %s\n", u.Name, hex.EncodeToString(sum[:]), strings.Join(u.Rules, " "))
	}
	return b.String()
}
