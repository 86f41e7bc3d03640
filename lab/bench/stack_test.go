package bench

import (
	"os"
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
