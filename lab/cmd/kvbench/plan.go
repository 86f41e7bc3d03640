package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/kvstack/kvstack/lab/bench"
	"github.com/kvstack/kvstack/lab/native"
)

// planOptions are kvbench -plan's: the load, the nodes, the reports.
type planOptions struct {
	load             bench.PlanLoad
	nodes            bench.PlanNodes
	report, scaleOut string
}

func planFlags(fs *flag.FlagSet) *planOptions {
	p := &planOptions{}
	fs.Float64Var(&p.load.Requests, "rps", 1_000_000, "-plan: requests a second at the edge, reads and writes")
	fs.Float64Var(&p.load.ReadShare, "reads", 0.95, "-plan: the share of the requests that are reads (GET of a key); the rest are writes")
	fs.Float64Var(&p.load.HitRatio, "hits", 0.99, "-plan: the share of the reads the cache answers")
	fs.IntVar(&p.nodes.Cores, "cores", 8, "-plan: cores of a node")
	fs.Float64Var(&p.nodes.Utilisation, "utilisation", 0.6, "-plan: the share of a node's cores (of a single-threaded process's core) the plan fills")
	fs.IntVar(&p.nodes.PrimaryCores, "primary-cores", 32, "-plan: cores of the largest PostgreSQL primary to run; past what it carries, partition")
	fs.Float64Var(&p.nodes.QueueRate, "queue-rate", 0, "-plan: messages a second one quorum queue carries, measured on the production nodes (default: estimated from the broker's CPU per message)")
	fs.StringVar(&p.report, "plan-report", "", "-plan: the report (default lab/bench/REPORT.md; its figures from REPORT.json beside it when there is one)")
	fs.StringVar(&p.scaleOut, "plan-ha", "", "-plan: the HA topology's report to check the plan against (default lab/bench/SCALEOUT.md)")
	return p
}

// run prints the plan of the last report's figures, and its check against
// the HA topology's.
func (p *planOptions) run(w io.Writer, root string) error {
	if root == "" {
		var err error
		if root, err = native.FindRoot(); err != nil {
			return err
		}
	}
	if p.report == "" {
		p.report = filepath.Join(root, "lab", "bench", "REPORT.md")
	}
	if p.scaleOut == "" {
		p.scaleOut = filepath.Join(root, "lab", "bench", "SCALEOUT.md")
	}
	rep, fromJSON, err := bench.ReadReport(p.report)
	if err != nil {
		return fmt.Errorf("the plan's figures: %w (make bench writes them)", err)
	}
	rows, err := bench.RowCosts(rep, map[string]string{"hit": "kvstack", "miss": "kvstack", "put": "kvstack", "apply": "kvstack"})
	if err != nil {
		return fmt.Errorf("%s: %w: the plan needs the kvstack column of the GET hit, GET miss, PUT and apply scenarios (make bench, all of them)", p.report, err)
	}
	plan, err := bench.MakePlan(rows, p.load, p.nodes)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "# Capacity plan\n\nFrom %s (the run of %s; %s).\n", rel(root, p.report), rep.Started.UTC().Format(time.RFC3339), source(p.report, fromJSON))
	plan.Write(w)
	ha, haJSON, err := bench.ReadReport(p.scaleOut)
	if errors.Is(err, bench.ErrNoReport) {
		fmt.Fprintf(w, "\nNo check against the HA topology: %s is missing (make bench-ha writes it).\n", rel(root, p.scaleOut))
		return nil
	}
	if err != nil {
		return err
	}
	haRows, err := bench.RowCosts(ha, map[string]string{"hit": "2 replicas", "apply": "1 consumer"})
	if err != nil {
		return fmt.Errorf("%s: %w (make bench-ha writes them)", p.scaleOut, err)
	}
	fmt.Fprintf(w, "\n## Checked against make bench-ha\n\nThe same CPU per operation on the HA topology, %s (the run of %s; %s): 2 API replicas for the GET hit, 1 consumer for the apply; an engine's figure is all its nodes'.\n\n",
		rel(root, p.scaleOut), ha.Started.UTC().Format(time.RFC3339), source(p.scaleOut, haJSON))
	bench.WriteCheck(w, bench.CheckAgainstHA(rows, haRows), plan)
	return nil
}

func source(md string, fromJSON bool) string {
	if fromJSON {
		return "figures from " + filepath.Base(bench.JSONPath(md))
	}
	return "figures parsed from the Markdown: the run wrote no " + filepath.Base(bench.JSONPath(md))
}

func rel(root, path string) string {
	if r, err := filepath.Rel(root, path); err == nil {
		return r
	}
	return path
}
