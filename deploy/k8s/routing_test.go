package k8s

import (
	"regexp"
	"slices"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	monitoringv1alpha1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1alpha1"
)

// The Alertmanager that reads kvstack's AlertmanagerConfig is the
// platform's (kube-prometheus-stack's, in namespace monitoring): its root
// route and its matcher strategy are not ours. Its chart's root receiver
// is "null". Its default strategy, OnNamespace, makes the operator add
// namespace="<the AlertmanagerConfig's namespace>" to the route it builds
// from ours and to both sides of our inhibit rules
// (prometheus-operator pkg/alertmanager/amcfg.go, namespaceEnforcer).
const (
	alertmanagerNamespace    = "monitoring"
	alertmanagerRootReceiver = "null"
)

// alertmanagerStrategy is the platform's Alertmanager's
// spec.alertmanagerConfigMatcherStrategy.type the build is made for.
var alertmanagerStrategy = monitoringv1.OnNamespaceConfigMatcherStrategyType

// amMatcher is one Alertmanager matcher.
type amMatcher struct{ name, op, value string }

func (mt amMatcher) matches(lbls map[string]string) bool {
	v := lbls[mt.name]
	switch mt.op {
	case "=":
		return v == mt.value
	case "!=":
		return v != mt.value
	case "=~", "!~":
		ok := regexp.MustCompile("^(?:" + mt.value + ")$").MatchString(v)
		return ok == (mt.op == "=~")
	}
	return false
}

// amNode is a route of Alertmanager's routing tree.
type amNode struct {
	matchers []amMatcher
	receiver string
	cont     bool
	routes   []*amNode
}

// match is Alertmanager's dispatch.Route.Match: the routes that take an
// alert; a child inherits its parent's receiver.
func (r *amNode) match(lbls map[string]string, parentReceiver string) []string {
	for _, mt := range r.matchers {
		if !mt.matches(lbls) {
			return nil
		}
	}
	receiver := r.receiver
	if receiver == "" {
		receiver = parentReceiver
	}
	var all []string
	for _, child := range r.routes {
		got := child.match(lbls, receiver)
		all = append(all, got...)
		if got != nil && !child.cont {
			break
		}
	}
	if len(all) == 0 {
		all = []string{receiver}
	}
	return all
}

// platformRoutes is the routing tree the operator builds from the
// AlertmanagerConfigs under the strategy, in front of the root route's
// own, each first-level route continuing (amcfg.go AddAlertmanagerConfigs).
// Receiver names are prefixed with the AlertmanagerConfig's namespace and
// name, as the operator does.
func platformRoutes(acs []*monitoringv1alpha1.AlertmanagerConfig, strategy monitoringv1.AlertmanagerConfigMatcherStrategyType) *amNode {
	root := &amNode{receiver: alertmanagerRootReceiver}
	var conv func(ac *monitoringv1alpha1.AlertmanagerConfig, r *monitoringv1alpha1.Route) *amNode
	conv = func(ac *monitoringv1alpha1.AlertmanagerConfig, r *monitoringv1alpha1.Route) *amNode {
		n := &amNode{cont: r.Continue}
		if r.Receiver != "" {
			n.receiver = ac.Namespace + "/" + ac.Name + "/" + r.Receiver
		}
		for _, mt := range r.Matchers {
			n.matchers = append(n.matchers, fromAC(mt))
		}
		children, _ := r.ChildRoutes()
		for i := range children {
			n.routes = append(n.routes, conv(ac, &children[i]))
		}
		return n
	}
	for _, ac := range acs {
		if ac.Spec.Route == nil {
			continue
		}
		n := conv(ac, ac.Spec.Route)
		n.cont = true
		if enforced(strategy, ac.Namespace) {
			n.matchers = append([]amMatcher{{"namespace", "=", ac.Namespace}}, n.matchers...)
		}
		root.routes = append(root.routes, n)
	}
	return root
}

func enforced(strategy monitoringv1.AlertmanagerConfigMatcherStrategyType, ns string) bool {
	switch strategy {
	case monitoringv1.NoneConfigMatcherStrategyType:
		return false
	case monitoringv1.OnNamespaceExceptForAlertmanagerNamespaceConfigMatcherStrategyType:
		return ns != alertmanagerNamespace
	}
	return true
}

func fromAC(mt monitoringv1alpha1.Matcher) amMatcher {
	op := string(mt.MatchType)
	if op == "" {
		op = "="
		if mt.Regex {
			op = "=~"
		}
	}
	return amMatcher{mt.Name, op, mt.Value}
}

// checkAlertRouting: every alert of the build reaches one of kvstack's
// receivers, not the platform's null, under the matcher strategy (and so
// carries what the strategy adds to both sides of the inhibit rules). An
// alert is sure to carry only its name and its rule's static labels: an
// aggregation in its expression may drop any other (sum by (queue) drops
// namespace), so routing may rely on no other.
func checkAlertRouting(t testing.TB, m *manifests, s *sources) problems {
	var p problems
	tree := platformRoutes(m.amConfigs, alertmanagerStrategy)
	ours := map[string]bool{}
	for _, ac := range m.amConfigs {
		for _, r := range ac.Spec.Receivers {
			if len(r.WebhookConfigs)+len(r.EmailConfigs)+len(r.PagerDutyConfigs)+len(r.SlackConfigs)+len(r.OpsGenieConfigs) > 0 {
				ours[ac.Namespace+"/"+ac.Name+"/"+r.Name] = true
			}
		}
	}
	n := 0
	for _, pr := range m.rules {
		for _, g := range pr.Spec.Groups {
			for _, r := range g.Rules {
				if r.Alert == "" {
					continue
				}
				n++
				lbls := map[string]string{"alertname": r.Alert}
				for k, v := range r.Labels {
					lbls[k] = v
				}
				got := tree.match(lbls, "")
				if !slices.ContainsFunc(got, func(rc string) bool { return ours[rc] }) {
					p.add("alert %s (labels %v) reaches %v under matcher strategy %s, none of kvstack's receivers", r.Alert, r.Labels, got, alertmanagerStrategy)
				}
			}
		}
	}
	if n == 0 {
		p.add("no alerting rule in the build")
	}
	return p
}
