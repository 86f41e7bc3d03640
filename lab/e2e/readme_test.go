//go:build e2e

package e2e

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// readmeFile is the README whose session TestReadmeSessionAsPrinted runs
// (go test -args -readme FILE: a broken copy, to see the test fail).
var readmeFile = flag.String("readme", "", "the README whose session TestReadmeSessionAsPrinted runs (default: the repository's README.md)")

// sessionStep is one command of the README's session and the output it
// shows (none: nothing is printed).
type sessionStep struct {
	line int // in the README
	cmd  string
	want []string
}

// readmeSession is the console block under "## A session": each "$ "
// line a command, the lines up to the next one its output.
func readmeSession(t *testing.T, text string) []sessionStep {
	t.Helper()
	lines := strings.Split(text, "\n")
	var steps []sessionStep
	section, block := false, false
	for i, l := range lines {
		switch {
		case strings.HasPrefix(l, "## "):
			section = l == "## A session"
		case section && !block && l == "```console":
			block = true
		case block && l == "```":
			if len(steps) == 0 {
				t.Fatal("README's session block holds no command")
			}
			return steps
		case block && strings.HasPrefix(l, "$ "):
			steps = append(steps, sessionStep{line: i + 1, cmd: strings.TrimPrefix(l, "$ ")})
		case block && len(steps) > 0:
			steps[len(steps)-1].want = append(steps[len(steps)-1].want, l)
		case block:
			t.Fatalf("README:%d: output before any command: %q", i+1, l)
		}
	}
	t.Fatal("README has no ```console block under \"## A session\"")
	return nil
}

// variableField is a JSON field of the session's answers that differs on
// every run: a printed value stands for whatever the run answered, the same
// printed value for the same answer (a PUT's version and the GET's after
// it), and an elided one ("…") for any.
var variableField = regexp.MustCompile(`"(op_id|timestamp|version)":"((?:[^"\\]|\\.)*)"`)

// outputPattern is the printed output as a pattern: exact, but for the
// variable fields (captured, in order, with their printed values) and "…"
// elsewhere (any text).
func outputPattern(want string) (*regexp.Regexp, []string) {
	var printed []string
	var b strings.Builder
	b.WriteString(`^`)
	last := 0
	quoteRest := func(s string) string {
		parts := strings.Split(s, "…")
		for i := range parts {
			parts[i] = regexp.QuoteMeta(parts[i])
		}
		return strings.Join(parts, `.*?`)
	}
	for _, m := range variableField.FindAllStringSubmatchIndex(want, -1) {
		b.WriteString(quoteRest(want[last:m[4]]))
		b.WriteString(`((?:[^"\\]|\\.)*)`)
		printed = append(printed, want[m[4]:m[5]])
		last = m[5]
	}
	b.WriteString(quoteRest(want[last:]))
	b.WriteString(`$`)
	return regexp.MustCompile(b.String()), printed
}

// match checks got against want, binding each printed variable value to
// the value answered (bound: the one already answered for it); it returns
// the new bindings, or why it does not match.
func match(got, want string, bound map[string]string) (map[string]string, string) {
	re, printed := outputPattern(want)
	m := re.FindStringSubmatch(got)
	if m == nil {
		return nil, fmt.Sprintf("printed:\n  %s\nanswered:\n  %s", strings.ReplaceAll(want, "\n", "\n  "), strings.ReplaceAll(got, "\n", "\n  "))
	}
	fresh := map[string]string{}
	for i, p := range printed {
		v := m[i+1]
		if strings.Contains(p, "…") {
			if v == "" {
				return nil, fmt.Sprintf("field printed %q answered empty", p)
			}
			p = strings.TrimSuffix(p, "…") // an elided value: its prefix names it
		}
		if prev, ok := bound[p]; ok && prev != v {
			return nil, fmt.Sprintf("printed %q again: answered %q, where it answered %q before", p, v, prev)
		}
		if prev, ok := fresh[p]; ok && prev != v {
			return nil, fmt.Sprintf("printed %q twice: answered %q and %q", p, prev, v)
		}
		fresh[p] = v
	}
	return fresh, ""
}

// The README's session, as printed: each command run in one bash, in
// order, from the repository's root, against the stack e2e runs; each
// output compared with what the README prints under it (a value that
// changes on every run, a version, an op_id, a timestamp, matches any, but
// one printed twice must be answered twice; "…" elides). A read printed
// right after a write may see the write not yet applied, as the README
// says under the session: a GET is run again, for up to 20 s, until it
// answers what is printed. Written against the stack's defaults
// (localhost:8080, .stack/tls/ca.pem): a stack elsewhere gets the same
// commands with its own address and CA, and the test says so.
func TestReadmeSessionAsPrinted(t *testing.T) {
	h := newHarness(t)
	file := *readmeFile
	if file == "" {
		file = filepath.Join(h.root, "README.md")
	}
	text, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	steps := readmeSession(t, string(text))
	// The stack's address and CA, where they are not the README's.
	var rewrite []string
	if addr := h.s.Get("NGINX_LISTEN"); addr != "127.0.0.1:8080" && addr != "localhost:8080" {
		rewrite = append(rewrite, "localhost:8080", addr)
	}
	if ca, _ := filepath.Rel(h.root, h.s.Get("KV_TLS_CA")); ca != ".stack/tls/ca.pem" {
		rewrite = append(rewrite, ".stack/tls/ca.pem", h.s.Get("KV_TLS_CA"))
	}
	if len(rewrite) > 0 {
		t.Logf("the stack is not where the README's session looks for it: its commands are run with %q", rewrite)
	}

	sh := startShell(t, h.root)
	bound := map[string]string{}
	for _, st := range steps {
		cmd := st.cmd
		if len(rewrite) > 0 {
			cmd = strings.NewReplacer(rewrite...).Replace(cmd)
		}
		want := strings.Join(st.want, "\n")
		read := strings.HasPrefix(cmd, "curl ") && !strings.Contains(cmd, " -X ") && !strings.Contains(cmd, " -d ")
		deadline := time.Now().Add(20 * time.Second)
		for {
			got, status := sh.run(t, cmd)
			why := ""
			if status != "0" {
				why = fmt.Sprintf("exit status %s, output %q", status, got)
			} else if fresh, w := match(got, want, bound); w != "" {
				why = w
			} else {
				for k, v := range fresh {
					bound[k] = v
				}
			}
			if why == "" {
				break
			}
			if !read || time.Now().After(deadline) {
				t.Fatalf("README:%d: $ %s\n%s", st.line, st.cmd, why)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	t.Logf("%d commands of the README's session answered as printed", len(steps))
}

// shell is one bash, fed a command at a time, as a terminal would: what
// one command defines (export, alias) holds for the next.
type shell struct {
	stdin io.WriteCloser
	out   *bufio.Reader
	n     int
}

func startShell(t *testing.T, dir string) *shell {
	t.Helper()
	cmd := exec.Command("bash", "--norc", "--noprofile")
	cmd.Dir = dir
	// A terminal's bash is not a make recipe's: make's own variables,
	// inherited when the suite runs under make -j (make test), would tell
	// the session's make to look for a jobserver it cannot reach.
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		switch name {
		case "MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES", "GNUMAKEFLAGS", "MAKE_TERMOUT", "MAKE_TERMERR":
			continue
		}
		cmd.Env = append(cmd.Env, kv)
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = w, w
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	t.Cleanup(func() {
		stdin.Close()
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		r.Close()
	})
	sh := &shell{stdin: stdin, out: bufio.NewReader(r)}
	// A terminal's bash expands aliases; a script's does not unless told.
	if _, status := sh.run(t, "shopt -s expand_aliases"); status != "0" {
		t.Fatal("bash: shopt -s expand_aliases failed")
	}
	return sh
}

// run runs one command line and returns its output (stdout and stderr,
// without the trailing newline) and exit status; 60 s at most.
func (sh *shell) run(t *testing.T, line string) (string, string) {
	t.Helper()
	sh.n++
	marker := fmt.Sprintf("@@readme-session-%d-%d@@", os.Getpid(), sh.n)
	// The marker on a line of its own, after the command's status.
	if _, err := fmt.Fprintf(sh.stdin, "%s\nprintf '\\n%s %%s\\n' \"$?\"\n", line, marker); err != nil {
		t.Fatalf("bash: %v", err)
	}
	type result struct {
		out, status string
		err         error
	}
	done := make(chan result, 1)
	go func() {
		var out strings.Builder
		for {
			l, err := sh.out.ReadString('\n')
			if err != nil {
				done <- result{out: out.String(), err: err}
				return
			}
			if rest, ok := strings.CutPrefix(l, marker+" "); ok {
				// The printf's newline, then the one that ends the output.
				done <- result{out: strings.TrimSuffix(strings.TrimSuffix(out.String(), "\n"), "\n"), status: strings.TrimSpace(rest)}
				return
			}
			out.WriteString(l)
		}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			t.Fatalf("bash ended while running %q: %v; output %q", line, r.err, r.out)
		}
		return r.out, r.status
	case <-time.After(60 * time.Second):
		t.Fatalf("%q: no end after 60 s", line)
		return "", ""
	}
}

// The comparison of TestReadmeSessionAsPrinted, without a stack: exact
// but for the variable fields, which bind.
func TestReadmeOutputMatch(t *testing.T) {
	put := `{"status":"accepted","op":"put","key":"greeting","op_id":"faafc5c6-…","timestamp":"2026-11-27T04:28:03.464101Z","version":"AAZh"}`
	bound, why := match(`{"status":"accepted","op":"put","key":"greeting","op_id":"0b1c-2d","timestamp":"2026-12-07T14:00:00Z","version":"V1"}`, put, map[string]string{})
	if why != "" || bound["AAZh"] != "V1" {
		t.Fatalf("a PUT's answer: %v %s", bound, why)
	}
	get := `{"key":"greeting","value":"hello","source":"redis","version":"AAZh"}`
	for _, tc := range []struct{ name, got string }{
		{"another version than the PUT's", `{"key":"greeting","value":"hello","source":"redis","version":"V2"}`},
		{"another value", `{"key":"greeting","value":"hullo","source":"redis","version":"V1"}`},
		{"another source", `{"key":"greeting","value":"hello","source":"postgres","version":"V1"}`},
		{"a field more", `{"key":"greeting","value":"hello","source":"redis","version":"V1","x":1}`},
		{"another line", "{\"key\":\"greeting\",\"value\":\"hello\",\"source\":\"redis\",\"version\":\"V1\"}\nmore"},
	} {
		if _, why := match(tc.got, get, bound); why == "" {
			t.Errorf("%s: matched", tc.name)
		}
	}
	if _, why := match(`{"key":"greeting","value":"hello","source":"redis","version":"V1"}`, get, bound); why != "" {
		t.Errorf("the GET as printed: %s", why)
	}
}
