// Command render prints the chart's manifests for a values file of
// values/, as `helm template` would:
//
//	go run ./cmd/render prod
//
// It is what `make k8s OVERLAY=prod` runs, with the Helm v4 SDK: no helm
// or kubectl binary is needed. Install with helm itself:
// `helm install kvstack deploy/k8s/chart -n kvstack -f deploy/k8s/values/prod.yaml`.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/kvstack/kvstack/deploy/k8s"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: render <dev|prod|prod-external>")
		os.Exit(2)
	}
	r, err := k8s.Render(context.Background(), "kvstack", k8s.ValuesFile(os.Args[1]))
	if err != nil {
		fmt.Fprintln(os.Stderr, "render:", err)
		os.Exit(1)
	}
	fmt.Print(r.YAML())
}
