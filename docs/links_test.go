// Package docs holds the tests that keep the repository's Markdown true to
// the repository: every relative link of README.md, CONTRIBUTING.md and
// docs/*.md leads to a file that exists, and every #anchor to a heading.
package docs

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode"

	"github.com/yuin/goldmark"
	"github.com/yuin/goldmark/ast"
	"github.com/yuin/goldmark/text"
)

// root is the repository root, seen from this package's directory.
const root = ".."

// documents are the Markdown files whose links are checked.
func documents(t *testing.T) []string {
	t.Helper()
	docs, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	files := []string{filepath.Join(root, "README.md")}
	if _, err := os.Stat(filepath.Join(root, "CONTRIBUTING.md")); err == nil {
		files = append(files, filepath.Join(root, "CONTRIBUTING.md"))
	}
	return append(files, docs...)
}

func TestMarkdownLinksResolve(t *testing.T) {
	repo, err := filepath.Abs(root)
	if err != nil {
		t.Fatal(err)
	}
	anchors := map[string]map[string]bool{} // Markdown file → its heading anchors
	for _, file := range documents(t) {
		doc := parse(t, file)
		for _, dest := range links(doc.node, doc.source) {
			if err := check(repo, file, dest, anchors); err != nil {
				t.Errorf("%s: link %q: %v", rel(repo, file), dest, err)
			}
		}
	}
}

// check reports why dest, a link in file, does not resolve inside the
// repository; links with a scheme (https:, mailto:) leave it and are not
// checked.
func check(repo, file, dest string, anchors map[string]map[string]bool) error {
	u, err := url.Parse(dest)
	if err != nil {
		return err
	}
	if u.Scheme != "" || u.Host != "" {
		return nil
	}
	if strings.HasPrefix(u.Path, "/") {
		return fmt.Errorf("absolute path: write it relative to %s", filepath.Dir(rel(repo, file)))
	}
	target := file
	if u.Path != "" {
		target = filepath.Join(filepath.Dir(file), filepath.FromSlash(u.Path))
	}
	abs, err := filepath.Abs(target)
	if err != nil {
		return err
	}
	if r, err := filepath.Rel(repo, abs); err != nil || r == ".." || strings.HasPrefix(r, ".."+string(filepath.Separator)) {
		return fmt.Errorf("leads out of the repository")
	}
	if _, err := os.Stat(abs); err != nil {
		return fmt.Errorf("no such file %s", rel(repo, abs))
	}
	if u.Fragment == "" {
		return nil
	}
	if filepath.Ext(abs) != ".md" {
		return fmt.Errorf("an anchor into %s, which is not Markdown", rel(repo, abs))
	}
	if anchors[abs] == nil {
		anchors[abs] = headingAnchors(parseFile(abs))
	}
	if !anchors[abs][u.Fragment] {
		return fmt.Errorf("%s has no heading with anchor #%s", rel(repo, abs), u.Fragment)
	}
	return nil
}

type document struct {
	node   ast.Node
	source []byte
}

func parse(t *testing.T, file string) document {
	t.Helper()
	d, err := parseErr(file)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func parseFile(file string) document {
	d, _ := parseErr(file) // the caller has already stat'ed it
	return d
}

func parseErr(file string) (document, error) {
	source, err := os.ReadFile(file)
	if err != nil {
		return document{}, err
	}
	return document{goldmark.DefaultParser().Parse(text.NewReader(source)), source}, nil
}

// links returns the destinations of every link and image of a document.
func links(doc ast.Node, source []byte) []string {
	var dests []string
	_ = ast.Walk(doc, func(n ast.Node, entering bool) (ast.WalkStatus, error) {
		if !entering {
			return ast.WalkContinue, nil
		}
		switch l := n.(type) {
		case *ast.Link:
			dests = append(dests, string(l.Destination))
		case *ast.Image:
			dests = append(dests, string(l.Destination))
		}
		return ast.WalkContinue, nil
	})
	return dests
}

// headingAnchors returns the anchors GitHub gives a document's headings:
// the text lower-cased, without what is neither a letter, a digit, a space,
// a hyphen nor an underscore, spaces made hyphens; a repeated anchor takes
// -1, -2, … in order.
func headingAnchors(d document) map[string]bool {
	anchors := map[string]bool{}
	seen := map[string]int{}
	_ = ast.Walk(d.node, func(n ast.Node, entering bool) (ast.WalkStatus, error) {
		h, ok := n.(*ast.Heading)
		if !entering || !ok {
			return ast.WalkContinue, nil
		}
		slug := slugify(plainText(h, d.source))
		if k := seen[slug]; k > 0 {
			anchors[fmt.Sprintf("%s-%d", slug, k)] = true
		} else {
			anchors[slug] = true
		}
		seen[slug]++
		return ast.WalkSkipChildren, nil
	})
	return anchors
}

func plainText(n ast.Node, source []byte) string {
	var b strings.Builder
	_ = ast.Walk(n, func(c ast.Node, entering bool) (ast.WalkStatus, error) {
		if !entering {
			return ast.WalkContinue, nil
		}
		switch t := c.(type) {
		case *ast.Text:
			b.Write(t.Segment.Value(source))
		case *ast.String:
			b.Write(t.Value)
		}
		return ast.WalkContinue, nil
	})
	return b.String()
}

func slugify(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
			b.WriteRune(r)
		}
	}
	return b.String()
}

func rel(repo, path string) string {
	abs, err := filepath.Abs(path)
	if err != nil {
		return path
	}
	if r, err := filepath.Rel(repo, abs); err == nil {
		return filepath.ToSlash(r)
	}
	return path
}

func TestSlugify(t *testing.T) {
	for _, tc := range []struct{ heading, want string }{
		{"Tracing: find a write's trace", "tracing-find-a-writes-trace"},
		{"Metrics, dashboards and alerts", "metrics-dashboards-and-alerts"},
		{"make up-ha", "make-up-ha"},
		{"Stopping: drain, then exit", "stopping-drain-then-exit"},
		{"RabbitMQ: three nodes, quorum queues", "rabbitmq-three-nodes-quorum-queues"},
		{"KV_WAIT_MAX and wait=applied", "kv_wait_max-and-waitapplied"},
	} {
		if got := slugify(tc.heading); got != tc.want {
			t.Errorf("slugify(%q) = %q, want %q", tc.heading, got, tc.want)
		}
	}
}
