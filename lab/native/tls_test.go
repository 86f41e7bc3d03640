package native_test

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kvstack/kvstack/lab/native"
)

// edgeLeaf is dir's edge certificate, checked against dir's CA for host.
func edgeLeaf(t *testing.T, dir, host string, at time.Time) *x509.Certificate {
	t.Helper()
	cfg, err := native.ClientTLS(filepath.Join(dir, native.CAFile))
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, native.EdgeFile), filepath.Join(dir, native.EdgeKeyFile))
	if err != nil {
		t.Fatalf("the edge's certificate and key: %v", err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: cfg.RootCAs, DNSName: host, CurrentTime: at,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		t.Fatalf("the edge's certificate for %s: %v", host, err)
	}
	return leaf
}

// The stack's CA and edge certificate: made once, valid for localhost,
// 127.0.0.1 and ::1, keys readable by their owner alone, kept while
// current, and made again (by the same CA) when a host is missing or it
// nears its end; a new CA gets a new certificate.
func TestEdgeCerts(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	hosts := []string{"localhost", "127.0.0.1", "::1"}
	renewed, err := native.MakeEdgeCerts(dir, hosts, now)
	if err != nil || !renewed {
		t.Fatalf("first call: renewed %v, %v; want a new certificate", renewed, err)
	}
	first := edgeLeaf(t, dir, "localhost", now)
	for _, h := range hosts {
		edgeLeaf(t, dir, h, now)
	}
	if got := first.NotAfter.Sub(now); got < 390*24*time.Hour || got > 398*24*time.Hour {
		t.Errorf("the certificate lives %s, want 397 days (the most a public CA issues)", got)
	}
	for _, f := range []string{native.CAKeyFile, native.EdgeKeyFile} {
		fi, err := os.Stat(filepath.Join(dir, f))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v %v, want mode 0600", f, fi.Mode(), err)
		}
	}
	caBefore, _ := os.ReadFile(filepath.Join(dir, native.CAFile))

	if renewed, err := native.MakeEdgeCerts(dir, hosts, now.Add(time.Hour)); err != nil || renewed {
		t.Fatalf("second call: renewed %v, %v; want the same certificate", renewed, err)
	}
	if renewed, err := native.MakeEdgeCerts(dir, append(hosts, "192.0.2.7"), now); err != nil || !renewed {
		t.Fatalf("a new host: renewed %v, %v; want a new certificate", renewed, err)
	}
	edgeLeaf(t, dir, "192.0.2.7", now)
	later := now.Add(370 * 24 * time.Hour)
	if renewed, err := native.MakeEdgeCerts(dir, hosts, later); err != nil || !renewed {
		t.Fatalf("27 days before its end: renewed %v, %v; want a new certificate", renewed, err)
	}
	edgeLeaf(t, dir, "localhost", later)
	if caAfter, _ := os.ReadFile(filepath.Join(dir, native.CAFile)); string(caAfter) != string(caBefore) {
		t.Fatal("the CA changed: clients would have to trust a new one")
	}

	// A new CA (the old one deleted): the certificate is made again, and
	// the old CA no longer verifies it.
	old, _ := native.ClientTLS(filepath.Join(dir, native.CAFile))
	os.Remove(filepath.Join(dir, native.CAFile))
	os.Remove(filepath.Join(dir, native.CAKeyFile))
	if renewed, err := native.MakeEdgeCerts(dir, hosts, now); err != nil || !renewed {
		t.Fatalf("a new CA: renewed %v, %v; want a new certificate", renewed, err)
	}
	leaf := edgeLeaf(t, dir, "localhost", now)
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: old.RootCAs, DNSName: "localhost"}); err == nil {
		t.Fatal("the old CA verifies the new CA's certificate")
	}
}

// An engine's certificate is a client's too: the nodes of a Redis Cluster
// present theirs to each other on the bus, which refuses a certificate for
// servers alone. One made before for servers alone (the edge's kind) is
// made again.
func TestEngineCertsServeClientsToo(t *testing.T) {
	s, err := native.Load("../..", []string{"KV_STACK_DIR=" + t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	// A server's certificate of the stack's CA where the engine's goes.
	if _, err := native.MakeEdgeCerts(s.TLSDir(), native.EngineHosts, time.Now()); err != nil {
		t.Fatal(err)
	}
	cert, key := native.EngineCert(s, "redis")
	for from, to := range map[string]string{native.EdgeFile: cert, native.EdgeKeyFile: key} {
		b, err := os.ReadFile(filepath.Join(s.TLSDir(), from))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(to, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if renewed, err := native.EngineCerts(s, "redis"); err != nil || !renewed {
		t.Fatalf("a server-only certificate: renewed %v, %v; want a new one", renewed, err)
	}
	cfg, err := native.ClientTLS(s.Get("KV_TLS_CA"))
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: cfg.RootCAs, DNSName: "127.0.0.1", KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
			t.Errorf("the engine's certificate for usage %v: %v", usage, err)
		}
	}
	if renewed, err := native.EngineCerts(s, "redis"); err != nil || renewed {
		t.Errorf("again: renewed %v, %v; want it kept", renewed, err)
	}
}
