package native

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// The files of a TLS directory (Settings.TLSDir): the local CA and the
// edge's server certificate it signs. The keys are mode 0600.
const (
	CAFile      = "ca.pem"
	CAKeyFile   = "ca-key.pem"
	EdgeFile    = "edge.pem"
	EdgeKeyFile = "edge-key.pem"
)

// Lifetimes: the CA for ten years (clients trust it once); the edge's
// certificate for 397 days, the most a public CA may issue, and made again
// by the stack's start from 30 days before it expires.
const (
	caLifetime    = 10 * 365 * 24 * time.Hour
	edgeLifetime  = 397 * 24 * time.Hour
	edgeRenewLeft = 30 * 24 * time.Hour
)

// TLSDir holds the stack's local CA and the edge's certificate.
func (s *Settings) TLSDir() string { return filepath.Join(s.Dir, "tls") }

// EdgeHosts are the names the edge's certificate is valid for: localhost,
// 127.0.0.1 and ::1, and KV_BIND_HOST when it is another one.
func EdgeHosts(s *Settings) []string {
	hosts := []string{"localhost", "127.0.0.1", "::1"}
	if h := s.Host(); h != "" && h != "0.0.0.0" && h != "::" && !slices.Contains(hosts, h) {
		hosts = append(hosts, h)
	}
	return hosts
}

// EdgeCerts makes the stack's local CA and the edge's certificate on the
// first call (the first render), as SigningKey makes the token key, and
// the certificate again when it expires within 30 days, lacks a host of
// EdgeHosts or was not signed by the CA in the directory (a new CA).
// renewed says the certificate was (re)made: a running nginx must reload.
func EdgeCerts(s *Settings) (renewed bool, err error) {
	renewed, err = MakeEdgeCerts(s.TLSDir(), EdgeHosts(s), time.Now())
	if err != nil {
		return false, fmt.Errorf("tls: the edge's certificate in %s: %w", s.TLSDir(), err)
	}
	return renewed, nil
}

// MakeEdgeCerts is EdgeCerts in dir for hosts, at now: a test's private
// nginx (lab/nginxtest) gets its own.
func MakeEdgeCerts(dir string, hosts []string, now time.Time) (renewed bool, err error) {
	return makeServerCert(dir, EdgeFile, EdgeKeyFile, hosts, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, now)
}

// EngineHosts are the names an engine's certificate is valid for: the
// stack's own engines listen on 127.0.0.1 alone.
var EngineHosts = []string{"127.0.0.1", "localhost"}

// EngineCert is the certificate and key files of the stack's own engine
// name (postgres, redis, rabbitmq), in TLSDir.
func EngineCert(s *Settings, name string) (cert, key string) {
	return filepath.Join(s.TLSDir(), "engine-"+name+".pem"), filepath.Join(s.TLSDir(), "engine-"+name+"-key.pem")
}

// EngineCerts makes the certificate of each engine the stack runs itself
// (KV_ENGINES=private, the HA topology), signed by the stack's CA for
// EngineHosts, as EdgeCerts makes the edge's and renews it alike: each
// with a key of its own, which the engine's system user is given. It is
// also a client's certificate (engineUsages). renewed says one was
// (re)made: a running engine reads it at its next start.
func EngineCerts(s *Settings, names ...string) (renewed bool, err error) {
	// The engines read them as their own users: the stack's directory
	// (0700 when the passwords made it) must let them through, before
	// anything renders the stack's configuration (the chaos campaigns
	// start their engines first).
	if err := makeStackDir(s.Dir); err != nil {
		return false, err
	}
	if err := passable(s.Dir); err != nil {
		return false, err
	}
	for _, name := range names {
		cert, key := EngineCert(s, name)
		r, err := makeServerCert(s.TLSDir(), filepath.Base(cert), filepath.Base(key), EngineHosts, engineUsages, time.Now())
		if err != nil {
			return false, fmt.Errorf("tls: %s's certificate in %s: %w", name, s.TLSDir(), err)
		}
		renewed = renewed || r
	}
	return renewed, nil
}

// engineUsages are an engine's certificate's: a server's, and a client's,
// for the nodes of a cluster present it to each other (a Redis Cluster's
// bus asks every node that connects for its certificate, whatever
// tls-auth-clients says, and refuses one for servers alone).
var engineUsages = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}

// makeServerCert makes in dir the CA (when missing) and a server
// certificate certFile with its key keyFile for hosts and usages, unless
// the one there is current (serverCertCurrent).
func makeServerCert(dir, certFile, keyFile string, hosts []string, usages []x509.ExtKeyUsage, now time.Time) (renewed bool, err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return false, err
	}
	ca, caKey, err := loadOrCreateCA(dir, now)
	if err != nil {
		return false, err
	}
	if serverCertCurrent(filepath.Join(dir, certFile), filepath.Join(dir, keyFile), ca, hosts, usages, now) {
		return false, nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return false, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{Organization: []string{"kvstack local stack"}, CommonName: hosts[0]},
		NotBefore:    now.Add(-time.Hour), // a client's clock a little behind
		NotAfter:     now.Add(edgeLifetime),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  usages,
	}
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
	// The key first: nginx reads both at its next reload, never a
	// certificate without its key.
	if err := writeReplace(filepath.Join(dir, keyFile), pemBlock("PRIVATE KEY", keyDER), 0o600); err != nil {
		return false, err
	}
	return true, writeReplace(filepath.Join(dir, certFile), pemBlock("CERTIFICATE", der), 0o644)
}

// loadOrCreateCA reads the CA of dir, or makes one when it has none. A
// CA is never overwritten: deleting it is how an operator asks for a new
// one (docs/OPERATIONS.md).
func loadOrCreateCA(dir string, now time.Time) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	certPath, keyPath := filepath.Join(dir, CAFile), filepath.Join(dir, CAKeyFile)
	pair, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err == nil {
		ca, err := x509.ParseCertificate(pair.Certificate[0])
		if err != nil {
			return nil, nil, err
		}
		key, ok := pair.PrivateKey.(*ecdsa.PrivateKey)
		if !ok {
			return nil, nil, fmt.Errorf("%s is not an ECDSA key", keyPath)
		}
		return ca, key, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	host, _ := os.Hostname()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{Organization: []string{"kvstack local CA"}, CommonName: "kvstack local CA " + host + " " + now.UTC().Format("2006-01-02")},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(caLifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true, // it signs servers' certificates, no other CA
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	if err := writeReplace(keyPath, pemBlock("PRIVATE KEY", keyDER), 0o600); err != nil {
		return nil, nil, err
	}
	if err := writeReplace(certPath, pemBlock("CERTIFICATE", der), 0o644); err != nil {
		return nil, nil, err
	}
	ca, err := x509.ParseCertificate(der)
	return ca, key, err
}

// serverCertCurrent is true when a server certificate and its key belong
// together, were signed by ca, cover hosts and usages and have more than
// 30 days left.
func serverCertCurrent(certPath, keyPath string, ca *x509.Certificate, hosts []string, usages []x509.ExtKeyUsage, now time.Time) bool {
	pair, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err != nil {
		return false
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil || now.Add(edgeRenewLeft).After(leaf.NotAfter) || leaf.CheckSignatureFrom(ca) != nil {
		return false
	}
	for _, h := range hosts {
		if leaf.VerifyHostname(h) != nil {
			return false
		}
	}
	for _, u := range usages {
		if !slices.Contains(leaf.ExtKeyUsage, u) {
			return false
		}
	}
	return true
}

// ClientTLS trusts only the CA in caFile: what every lab client of the
// edge uses (curl --cacert caFile likewise).
func ClientTLS(caFile string) (*tls.Config, error) {
	b, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("the edge's CA: %w (the stack makes it on its first start: make up)", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("the edge's CA: no certificate in %s", caFile)
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

// EdgeTLS is ClientTLS of the stack's CA (KV_TLS_CA).
func EdgeTLS(s *Settings) (*tls.Config, error) { return ClientTLS(s.Get("KV_TLS_CA")) }

// EdgeURL is the edge's base URL: https://NGINX_LISTEN.
func EdgeURL(s *Settings) string { return "https://" + s.Get("NGINX_LISTEN") }

// EdgeTransport is an HTTP/1.1 transport that trusts the stack's CA, for
// clients of the edge; HTTP/2 is offered by nginx, and tested on its own
// (lab/e2e), so that a lab client's connections and limits stay those of
// HTTP/1.1 clients.
func EdgeTransport(s *Settings, maxIdlePerHost int) (*http.Transport, error) {
	cfg, err := EdgeTLS(s)
	if err != nil {
		return nil, err
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.TLSClientConfig, t.MaxIdleConnsPerHost, t.ForceAttemptHTTP2 = cfg, maxIdlePerHost, false
	return t, nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err) // crypto/rand does not fail
	}
	return n
}

func pemBlock(kind string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der})
}

// writeReplace writes path through a temporary file and a rename, so that
// nginx reloading meanwhile never reads half a file.
func writeReplace(path string, data []byte, mode os.FileMode) error {
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, data) {
		return nil
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
