// Package k8s proves kvstack's Kubernetes manifests (base/, components/,
// overlays/) without a cluster. Its test builds each overlay with
// kustomize's own Go API, decodes every object strictly (an unknown field is
// an error) into its real Go type — Kubernetes', KEDA's and
// prometheus-operator's, and for the RabbitMQ, CloudNativePG and Redis
// operators, whose modules the Go module proxy does not serve, small structs
// named and typed after their API references — and checks the objects
// against the single sources the native stack and compose use: stack.env,
// the variables the binaries read (`-env`), the API's routes, the nginx
// template, the alert rules, Alertmanager's routing and the dashboard.
//
// It is a module of its own so that Kubernetes' dependencies never enter
// kvstack's go.mod. Run it with `make test-k8s` (part of `make test`).
package k8s
