package supervisor

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestQuote(t *testing.T) {
	tests := []struct{ in, want string }{
		{"/usr/bin/nginx", "/usr/bin/nginx"},
		{"--web.listen-address=127.0.0.1:9090", `"--web.listen-address=127.0.0.1:9090"`},
		{"daemon off; pid /x/nginx.pid;", `"daemon off; pid /x/nginx.pid;"`},
		{"", `""`},
		{`say "hi"\n`, `"say \"hi\"\\n"`},
		{"100%", "100%%"},
		{"a,b", `"a,b"`},
	}
	for _, tt := range tests {
		got, err := quote(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("quote(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
	if _, err := quote("two\nlines"); err == nil {
		t.Error("quote accepted a newline")
	}
}

func TestSupervisordConf(t *testing.T) {
	conf, err := supervisordConf("/st", []Program{{
		Name:     "api1",
		Command:  []string{"/bin/api", "-g", "daemon off;"},
		Env:      map[string]string{"B": "2", "A": "x:y,z"},
		Dir:      "/repo",
		Priority: 20,
		StopWait: 7 * time.Second,
		Log:      "/st/logs/api1.log",
	}})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"[unix_http_server]\nfile=/st/supervisor.sock\nchmod=0700\n",
		"pidfile=/st/supervisord.pid\n",
		"serverurl=unix:///st/supervisor.sock\n",
		"[program:api1]\ncommand=/bin/api -g \"daemon off;\"\ndirectory=/repo\n",
		"environment=A=\"x:y,z\",B=\"2\"\n", // sorted, always quoted
		"priority=20\nautostart=false\nautorestart=true\nstartsecs=1\n",
		"stopsignal=TERM\nstopwaitsecs=7\nstopasgroup=true\nkillasgroup=true\n",
		"redirect_stderr=true\nstdout_logfile=/st/logs/api1.log\n",
	} {
		if !strings.Contains(conf, want) {
			t.Errorf("conf lacks %q:\n%s", want, conf)
		}
	}
	// A program something else heals is not restarted by supervisord.
	conf, err = supervisordConf("/st", []Program{{Name: "postgres1", Command: []string{"postgres"}, NoRestart: true}})
	if err != nil || !strings.Contains(conf, "\nautorestart=false\n") {
		t.Errorf("a NoRestart program (%v):\n%s", err, conf)
	}
	for _, bad := range []Program{
		{Name: "API", Command: []string{"x"}},
		{Name: "x"},
		{Name: "x", Command: []string{"x"}, Env: map[string]string{"lower": "1"}},
		{Name: "x", Command: []string{"x"}, Env: map[string]string{"A": "1\n2"}},
	} {
		if _, err := supervisordConf("/st", []Program{bad}); err == nil {
			t.Errorf("program %+v accepted", bad)
		}
	}
}

func TestDecodeResponse(t *testing.T) {
	body := `<?xml version='1.0'?>
<methodResponse><params><param><value><array><data>
<value><struct>
<member><name>name</name><value><string>api1</string></value></member>
<member><name>pid</name><value><int>42</int></value></member>
<member><name>bare</name><value>text &amp; more</value></member>
<member><name>ok</name><value><boolean>1</boolean></value></member>
<member><name>empty</name><value><string></string></value></member>
</struct></value>
</data></array></value></param></params></methodResponse>`
	got, err := decodeResponse(strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	want := []any{map[string]any{"name": "api1", "pid": 42, "bare": "text & more", "ok": true, "empty": ""}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("decoded %#v, want %#v", got, want)
	}

	fault := `<?xml version='1.0'?><methodResponse><fault><value><struct>
<member><name>faultCode</name><value><int>10</int></value></member>
<member><name>faultString</name><value><string>BAD_NAME: nope</string></value></member>
</struct></value></fault></methodResponse>`
	_, err = decodeResponse(strings.NewReader(fault))
	if !isFault(err, faultBadName) || !strings.Contains(err.Error(), "BAD_NAME: nope") {
		t.Fatalf("fault decoded as %v", err)
	}
}

// supervisord refuses to start when a program's log directory is missing:
// on a fresh clone, the chaos campaign's engines log into a stack's logs
// directory that nothing had made yet.
func TestWriteConfMakesEveryLogDirectory(t *testing.T) {
	dir := t.TempDir()
	elsewhere := filepath.Join(t.TempDir(), "stack", "logs")
	sup := NewSupervisor(filepath.Join(dir, "sup"))
	if _, err := sup.WriteConf([]Program{{Name: "redis", Command: []string{"redis-server"}, Log: filepath.Join(elsewhere, "redis.log")}}); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{filepath.Join(dir, "sup", "logs"), elsewhere} {
		if fi, err := os.Stat(d); err != nil || !fi.IsDir() {
			t.Errorf("%s: %v, want a directory", d, err)
		}
	}
}
