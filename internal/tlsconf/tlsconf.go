// Package tlsconf builds the TLS client settings that the Redis and
// RabbitMQ adapters share (pgx reads PostgreSQL's from its connection
// string): the certificate authorities a server's certificate must chain
// to, read from a PEM file, and the name it must carry.
package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
)

// Client is a TLS client configuration that trusts the certificates of
// caFile (PEM; empty: the system's roots) and checks the server's name
// against serverName (empty: the host dialled, which crypto/tls fills in).
// TLS 1.2 is the least version offered.
func Client(caFile, serverName string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: serverName}
	if caFile == "" {
		return cfg, nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("TLS CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("TLS CA file %s: no PEM certificate in it", caFile)
	}
	cfg.RootCAs = pool
	return cfg, nil
}
