package supervisor

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"
)

// envName is a name supervisord's environment= takes as it is.
var envName = regexp.MustCompile(`^[A-Z][A-Z0-9_]*$`)

// supervisordConf renders supervisord.conf: a private supervisord (its own
// socket, pid file and log under dir, never the system's /etc/supervisor)
// and one [program:x] per program, none started by supervisord itself: Up
// starts them in order, and supervisord restarts any that dies.
func supervisordConf(dir string, programs []Program) (string, error) {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	w("; Written by kvstack's lab/native (bin/stack): every `up` rewrites it.")
	w("; By hand: supervisorctl -c %s status", confValue(filepath.Join(dir, "supervisord.conf")))
	w("")
	w("[unix_http_server]")
	w("file=%s", confValue(filepath.Join(dir, "supervisor.sock")))
	w("chmod=0700")
	w("")
	w("[supervisord]")
	w("logfile=%s", confValue(filepath.Join(dir, "logs", "supervisord.log")))
	w("logfile_maxbytes=10MB")
	w("logfile_backups=1")
	w("pidfile=%s", confValue(filepath.Join(dir, "supervisord.pid")))
	w("childlogdir=%s", confValue(filepath.Join(dir, "logs")))
	if os.Geteuid() == 0 {
		w("user=root")
	}
	w("")
	w("[rpcinterface:supervisor]")
	w("supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface")
	w("")
	w("[supervisorctl]")
	w("serverurl=unix://%s", confValue(filepath.Join(dir, "supervisor.sock")))
	for _, p := range programs {
		if err := programSection(&b, p); err != nil {
			return "", fmt.Errorf("program %s: %w", p.Name, err)
		}
	}
	return b.String(), nil
}

var programName = regexp.MustCompile(`^[a-z][a-z0-9_-]*$`)

func programSection(b *strings.Builder, p Program) error {
	if !programName.MatchString(p.Name) || len(p.Command) == 0 {
		return fmt.Errorf("needs a plain name and a command")
	}
	w := func(format string, args ...any) { fmt.Fprintf(b, format+"\n", args...) }
	cmd := make([]string, len(p.Command))
	for i, a := range p.Command {
		q, err := quote(a)
		if err != nil {
			return fmt.Errorf("argument %d: %w", i, err)
		}
		cmd[i] = q
	}
	w("")
	w("[program:%s]", p.Name)
	w("command=%s", strings.Join(cmd, " "))
	if p.Dir != "" {
		w("directory=%s", confValue(p.Dir))
	}
	if len(p.Env) > 0 {
		names := make([]string, 0, len(p.Env))
		for k := range p.Env {
			names = append(names, k)
		}
		sort.Strings(names)
		pairs := make([]string, len(names))
		for i, k := range names {
			q, err := quote(p.Env[k])
			if err != nil {
				return fmt.Errorf("%s: %w", k, err)
			}
			if !envName.MatchString(k) {
				return fmt.Errorf("environment name %q", k)
			}
			// Always quoted: supervisord's parser splits unquoted values at
			// characters such as ':' and ','.
			if !strings.HasPrefix(q, `"`) {
				q = `"` + q + `"`
			}
			pairs[i] = k + "=" + q
		}
		w("environment=%s", strings.Join(pairs, ","))
	}
	if p.User != "" && os.Geteuid() == 0 {
		w("user=%s", p.User)
	}
	w("priority=%d", p.Priority)
	w("autostart=false")
	w("autorestart=%t", !p.NoRestart)
	w("startsecs=%d", or(p.StartSecs, 1))
	// A process that dies within startsecs is retried this often (with
	// 1, 2, 3… s between) before supervisord gives up on it (FATAL).
	w("startretries=5")
	w("stopsignal=%s", orString(p.StopSignal, "TERM"))
	w("stopwaitsecs=%d", int(orDuration(p.StopWait, 20*time.Second).Seconds()))
	// The signal reaches the whole process group (a program's children
	// too), and so does the SIGKILL after stopwaitsecs.
	w("stopasgroup=true")
	w("killasgroup=true")
	w("redirect_stderr=true")
	w("stdout_logfile=%s", confValue(p.Log))
	w("stdout_logfile_maxbytes=50MB")
	w("stdout_logfile_backups=2")
	return nil
}

// quote makes one word for supervisord's shlex-style parsing: double
// quotes when needed, '%' doubled (supervisord expands %(name)s in every
// value). A newline cannot be expressed.
func quote(s string) (string, error) {
	if strings.ContainsAny(s, "\n\r") {
		return "", fmt.Errorf("%q holds a newline", s)
	}
	s = strings.ReplaceAll(s, "%", "%%")
	if s != "" && !strings.ContainsAny(s, " \t\"'\\;#,=:") {
		return s, nil
	}
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`)
	return `"` + r.Replace(s) + `"`, nil
}

// confValue is a path or URL as a plain config value: only '%' is special.
func confValue(s string) string { return strings.ReplaceAll(s, "%", "%%") }

func or(n, def int) int {
	if n == 0 {
		return def
	}
	return n
}

func orString(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func orDuration(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}
