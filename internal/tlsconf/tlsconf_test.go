package tlsconf_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kvstack/kvstack/internal/tlsconf"
)

func TestClient(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, caFile, want string
	}{
		{"missing file", filepath.Join(dir, "absent.pem"), "no such file"},
		{"not PEM", notPEM, "no PEM certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tlsconf.Client(tc.caFile, "")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Client(%s): %v, want an error saying %q", tc.caFile, err, tc.want)
			}
		})
	}
	cfg, err := tlsconf.Client("", "db.example")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.RootCAs != nil || cfg.ServerName != "db.example" || cfg.InsecureSkipVerify {
		t.Fatalf("Client(\"\", db.example) = roots %v, name %q, skip %v; want the system's roots, db.example, verified",
			cfg.RootCAs, cfg.ServerName, cfg.InsecureSkipVerify)
	}
}
