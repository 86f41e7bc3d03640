// Package k8s is kvstack's Helm chart (chart/, one packaging for outside
// teams) and what proves it without a cluster. Render renders the chart
// with the Helm v4 SDK for a values file of values/ (dev, prod,
// prod-external), as `helm template` does, for MinKubeVersion; cmd/render
// prints it (`make k8s OVERLAY=prod`).
//
// The tests decode every rendered object strictly (an unknown field is an
// error) into its real Go type — Kubernetes', KEDA's, prometheus-operator's,
// the Gateway API's, cert-manager's, and for the RabbitMQ, CloudNativePG and
// OpsTree kinds small structs named and typed after their API references —
// and check the objects against the single sources the native
// stack and compose use (stack.env, the variables the binaries read, the
// API's routes, the nginx template, the alert rules, Alertmanager's routing,
// the dashboard) and against what each operator does with them (disk
// alarms, memory, matcher strategies, exporters), and the NetworkPolicies
// against the list of flows kvstack needs. Each check is shown failing on
// a broken copy (TestChecksCatch).
//
// It is a module of its own so that Kubernetes', Helm's and the operators'
// dependencies never enter kvstack's go.mod. Run it with `make test-k8s`.
package k8s
