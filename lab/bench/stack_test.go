package bench

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestAddUpstreamsCopiesTheLastServerLine(t *testing.T) {
	conf := "upstream kv_api {\n        server 127.0.0.1:1 max_fails=1 fail_timeout=2s;\n        server 127.0.0.1:2 max_fails=1 fail_timeout=2s;\n        keepalive 64;\n}\n"
	got, err := addUpstreams(conf, "127.0.0.1:2", []string{"127.0.0.1:3", "127.0.0.1:4"})
	if err != nil {
		t.Fatal(err)
	}
	want := "upstream kv_api {\n        server 127.0.0.1:1 max_fails=1 fail_timeout=2s;\n        server 127.0.0.1:2 max_fails=1 fail_timeout=2s;\n" +
		"        server 127.0.0.1:3 max_fails=1 fail_timeout=2s;\n        server 127.0.0.1:4 max_fails=1 fail_timeout=2s;\n        keepalive 64;\n}\n"
	if got != want {
		t.Errorf("addUpstreams =\n%s\nwant\n%s", got, want)
	}
	if same, err := addUpstreams(conf, "127.0.0.1:2", nil); err != nil || same != conf {
		t.Errorf("addUpstreams with none to add changed the configuration (%v)", err)
	}
	if _, err := addUpstreams(conf, "127.0.0.1:9", []string{"127.0.0.1:3"}); err == nil {
		t.Error("addUpstreams after a server the configuration lacks: no error")
	}
}

// A full report appends the notes: they are where the harness looks.
func TestNotesAreWhereTheReportReadsThem(t *testing.T) {
	if _, err := os.Stat(notesPath(repoRoot(t))); err != nil {
		t.Error(err)
	}
}

// The TLS off variant's edge is the template's, less its TLS lines.
func TestWithoutTLSServesPlainHTTP(t *testing.T) {
	tmpl, err := os.ReadFile(filepath.Join(repoRoot(t), "nginx", "nginx.conf.template"))
	if err != nil {
		t.Fatal(err)
	}
	conf := strings.ReplaceAll(string(tmpl), "${NGINX_LISTEN}", "127.0.0.1:18100")
	got, err := withoutTLS(conf, "127.0.0.1:18100")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(got, "\n") {
		if f := strings.Fields(l); len(f) > 0 && (strings.HasPrefix(f[0], "ssl_") || f[0] == "listen" && strings.Contains(l, " ssl")) {
			t.Errorf("a TLS line is left: %q", l)
		}
	}
	if !strings.Contains(got, "listen 127.0.0.1:18100;") {
		t.Error("no plain listen line")
	}
	if strings.Contains(got, "error_page 497") {
		t.Error("the plain-request-on-the-TLS-port page is left")
	}
	// Only the TLS lines go: the rest (HSTS included) is the template's.
	if removed := strings.Count(conf, "\n") - strings.Count(got, "\n"); removed != strings.Count(conf, "ssl_")+1 {
		t.Errorf("%d lines removed, want the %d ssl_ lines and error_page 497", removed, strings.Count(conf, "ssl_"))
	}
	if _, err := withoutTLS(conf, "127.0.0.1:9"); err == nil {
		t.Error("withoutTLS for a listen address the configuration lacks: no error")
	}
}
