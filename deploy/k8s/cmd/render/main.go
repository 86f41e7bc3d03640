// Command render prints an overlay's manifests for `kubectl apply -f -`:
//
//	go run ./cmd/render overlays/prod
//
// It is what `make k8s` runs: kustomize's own Go API, so no kustomize or
// kubectl binary is needed to build them.
package main

import (
	"fmt"
	"os"

	"github.com/kvstack/kvstack/deploy/k8s"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: render <kustomization dir>")
		os.Exit(2)
	}
	m, err := k8s.Build(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "render:", err)
		os.Exit(1)
	}
	out, err := m.AsYaml()
	if err != nil {
		fmt.Fprintln(os.Stderr, "render:", err)
		os.Exit(1)
	}
	os.Stdout.Write(out)
}
