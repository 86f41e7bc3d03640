package main

import (
	"os"
	"slices"
	"strings"
)

// The report (docs/RELIABILITY.md) is made of sections, each written by
// one campaign and kept as it is by the others, in this order: make
// chaos's (the head of the file, before any marker), then make chaos-ha's,
// make dr-drill's and make dr-drill-ha's, each after its marker.
var sectionMarkers = []string{haMarker, drMarker, drHAMarker}

// writeSection replaces the section that follows marker ("" for make
// chaos's, the head) in the report at path with body, keeping the others.
func writeSection(path, marker, body string) error {
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	parts := splitSections(string(b))
	parts[marker] = body
	head := parts[""]
	if strings.TrimSpace(head) == "" {
		head = "# Reliability\n"
	}
	var out strings.Builder
	out.WriteString(strings.TrimRight(head, "\n") + "\n")
	for _, m := range sectionMarkers {
		if text, ok := parts[m]; ok {
			out.WriteString("\n" + m + "\n\n" + strings.Trim(text, "\n") + "\n")
		}
	}
	return os.WriteFile(path, []byte(out.String()), 0o644)
}

// splitSections cuts a report at its markers: the head under "", each
// section under its marker (absent when the report has none).
func splitSections(text string) map[string]string {
	type cut struct {
		marker string
		at     int
	}
	var cuts []cut
	for _, m := range sectionMarkers {
		if at := strings.Index(text, m); at >= 0 {
			cuts = append(cuts, cut{m, at})
		}
	}
	slices.SortFunc(cuts, func(a, b cut) int { return a.at - b.at })
	parts := map[string]string{}
	end := len(text)
	if len(cuts) > 0 {
		end = cuts[0].at
	}
	parts[""] = text[:end]
	for i, c := range cuts {
		end := len(text)
		if i+1 < len(cuts) {
			end = cuts[i+1].at
		}
		parts[c.marker] = text[c.at+len(c.marker) : end]
	}
	return parts
}
