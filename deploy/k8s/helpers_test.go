package k8s

import (
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// problems collects what a check found wrong.
type problems []string

func (p *problems) add(format string, args ...any) { *p = append(*p, fmt.Sprintf(format, args...)) }

// kvContainer is a container running one of kvstack's binaries.
type kvContainer struct {
	owner string // Deployment or Job
	pod   *corev1.PodSpec
	c     *corev1.Container
	bin   string
	init  bool // an init container, or a Job's: it runs to completion
}

func (k kvContainer) String() string { return k.owner + "/" + k.c.Name }

// kvContainers lists the containers whose command is /kvstack/<binary>, of
// the Deployments and of the Jobs (the migrations).
func (m *manifests) kvContainers() []kvContainer {
	var out []kvContainer
	add := func(owner string, spec *corev1.PodSpec, job bool) {
		for i := range spec.InitContainers {
			if bin, ok := kvBinary(&spec.InitContainers[i]); ok {
				out = append(out, kvContainer{owner, spec, &spec.InitContainers[i], bin, true})
			}
		}
		for i := range spec.Containers {
			if bin, ok := kvBinary(&spec.Containers[i]); ok {
				out = append(out, kvContainer{owner, spec, &spec.Containers[i], bin, job})
			}
		}
	}
	for _, d := range m.deployments {
		add(d.Name, &d.Spec.Template.Spec, false)
	}
	for _, j := range m.jobs {
		add(j.Name, &j.Spec.Template.Spec, true)
	}
	return out
}

func kvBinary(c *corev1.Container) (string, bool) {
	if len(c.Command) != 1 || !strings.HasPrefix(c.Command[0], "/kvstack/") {
		return "", false
	}
	return strings.TrimPrefix(c.Command[0], "/kvstack/"), true
}

// mainContainer is the one container of a Deployment running bin.
func (m *manifests) mainContainer(bin string) *kvContainer {
	for _, k := range m.kvContainers() {
		if k.bin == bin && !k.init {
			return &k
		}
	}
	return nil
}

func envVar(c *corev1.Container, name string) *corev1.EnvVar {
	for i := range c.Env {
		if c.Env[i].Name == name {
			return &c.Env[i]
		}
	}
	return nil
}

// effective is the value a binary sees: the container's literal value, or
// the binary's default.
func (s *sources) effective(k kvContainer, name string) string {
	if e := envVar(k.c, name); e != nil && e.ValueFrom == nil {
		return e.Value
	}
	return s.env[k.bin][name]
}

func (s *sources) duration(k kvContainer, name string) (time.Duration, error) {
	v := s.effective(k, name)
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, fmt.Errorf("%s: %s = %q: %v", k, name, v, err)
	}
	return d, nil
}

func (s *sources) integer(k kvContainer, name string) (int, error) {
	v := s.effective(k, name)
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, fmt.Errorf("%s: %s = %q: %v", k, name, v, err)
	}
	return n, nil
}

// hostPort splits host:port, or a URL's host and port.
func hostPort(addr string) (string, string) {
	if u, err := url.Parse(addr); err == nil && u.Host != "" {
		addr = u.Host
	}
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		return addr, ""
	}
	return h, p
}

func containerPort(c *corev1.Container, name string) int32 {
	for _, p := range c.Ports {
		if p.Name == name {
			return p.ContainerPort
		}
	}
	return 0
}

// resolvePort turns a probe's or policy's port (number or name) into a
// number on container c.
func resolvePort(c *corev1.Container, p intstr.IntOrString) int32 {
	if p.Type == intstr.Int {
		return p.IntVal
	}
	return containerPort(c, p.StrVal)
}

func selects(sel *metav1.LabelSelector, lbls map[string]string) bool {
	if sel == nil {
		return false
	}
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		return false
	}
	return s.Matches(labels.Set(lbls))
}

// pod is one side of a connection, for NetworkPolicy checks.
type pod struct {
	ns     string
	labels map[string]string
	ports  map[string]int32 // named container ports
	ip     string           // a host-network endpoint has an address only
}

func (p pod) String() string {
	if p.ip != "" {
		return p.ip
	}
	return fmt.Sprintf("%s%v", p.ns, p.labels)
}

// allowed reports whether the NetworkPolicies let traffic from `from` reach
// `to` on port (TCP) — as Kubernetes reads them: a pod no policy of a
// direction selects is open in that direction; otherwise one rule of one
// policy selecting it must allow.
func allowed(pols []*networkingv1.NetworkPolicy, from, to pod, port int32) bool {
	return allowedDir(pols, networkingv1.PolicyTypeEgress, from, to, port, to.ports) &&
		allowedDir(pols, networkingv1.PolicyTypeIngress, to, from, port, to.ports)
}

func allowedDir(pols []*networkingv1.NetworkPolicy, dir networkingv1.PolicyType, self, other pod, port int32, named map[string]int32) bool {
	isolated := false
	for _, np := range pols {
		if np.Namespace != self.ns || !selects(&np.Spec.PodSelector, self.labels) || !hasType(np, dir) {
			continue
		}
		isolated = true
		if dir == networkingv1.PolicyTypeIngress {
			for _, r := range np.Spec.Ingress {
				if peersMatch(r.From, np.Namespace, other) && portsMatch(r.Ports, port, named) {
					return true
				}
			}
		} else {
			for _, r := range np.Spec.Egress {
				if peersMatch(r.To, np.Namespace, other) && portsMatch(r.Ports, port, named) {
					return true
				}
			}
		}
	}
	return !isolated
}

func hasType(np *networkingv1.NetworkPolicy, t networkingv1.PolicyType) bool {
	for _, pt := range np.Spec.PolicyTypes {
		if pt == t {
			return true
		}
	}
	return false
}

func peersMatch(peers []networkingv1.NetworkPolicyPeer, policyNS string, other pod) bool {
	if len(peers) == 0 {
		return true
	}
	for _, p := range peers {
		switch {
		case p.IPBlock != nil:
			if other.ip != "" && inBlock(p.IPBlock, other.ip) {
				return true
			}
		case other.ip != "":
			// Selectors pick pods, not a host-network address.
		case p.NamespaceSelector == nil:
			if other.ns == policyNS && (p.PodSelector == nil || selects(p.PodSelector, other.labels)) {
				return true
			}
		case selects(p.NamespaceSelector, map[string]string{"kubernetes.io/metadata.name": other.ns}):
			if p.PodSelector == nil || selects(p.PodSelector, other.labels) {
				return true
			}
		}
	}
	return false
}

func inBlock(b *networkingv1.IPBlock, ip string) bool {
	_, cidr, err := net.ParseCIDR(b.CIDR)
	addr := net.ParseIP(ip)
	if err != nil || addr == nil || !cidr.Contains(addr) {
		return false
	}
	for _, e := range b.Except {
		if _, ex, err := net.ParseCIDR(e); err == nil && ex.Contains(addr) {
			return false
		}
	}
	return true
}

func portsMatch(ports []networkingv1.NetworkPolicyPort, port int32, named map[string]int32) bool {
	if len(ports) == 0 {
		return true
	}
	for _, p := range ports {
		if p.Protocol != nil && *p.Protocol != corev1.ProtocolTCP {
			continue
		}
		if p.Port == nil {
			return true
		}
		want := p.Port.IntVal
		if p.Port.Type == intstr.String {
			want = named[p.Port.StrVal]
		}
		if want == port || (p.EndPort != nil && port >= want && port <= *p.EndPort) {
			return true
		}
	}
	return false
}

// podOf is a Deployment's pod as a NetworkPolicy sees it.
func podOf(d *appsv1.Deployment) pod {
	p := pod{ns: d.Namespace, labels: d.Spec.Template.Labels, ports: map[string]int32{}}
	for _, c := range d.Spec.Template.Spec.Containers {
		for _, cp := range c.Ports {
			p.ports[cp.Name] = cp.ContainerPort
		}
	}
	return p
}

// nginxSeconds reads an nginx time (5s, 1m, 60) as whole seconds.
func nginxSeconds(v string) (int64, error) {
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		return n, nil
	}
	d, err := time.ParseDuration(v)
	return int64(d / time.Second), err
}

// namespace is the namespace the release installs into.
func (m *manifests) namespace() string {
	for _, d := range m.deployments {
		if d.Namespace != "" {
			return d.Namespace
		}
	}
	return "kvstack"
}

// autoscaled reports whether an HPA or a KEDA ScaledObject scales the
// Deployment name.
func (m *manifests) autoscaled(name string) bool {
	for _, h := range m.hpas {
		if h.Spec.ScaleTargetRef.Kind == "Deployment" && h.Spec.ScaleTargetRef.Name == name {
			return true
		}
	}
	for _, so := range m.scaledObjects {
		if so.Spec.ScaleTargetRef != nil && so.Spec.ScaleTargetRef.Name == name && (so.Spec.ScaleTargetRef.Kind == "" || so.Spec.ScaleTargetRef.Kind == "Deployment") {
			return true
		}
	}
	return false
}
