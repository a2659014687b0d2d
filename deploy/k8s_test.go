package deploy_test

import (
	"bytes"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes/scheme"
	sigsyaml "sigs.k8s.io/yaml"
)

// The kustomize trees under test; each must render and pass every check.
var kustomizeDirs = []string{"k8s/base", "k8s/overlays/example", "k8s/overlays/cert-manager"}

// foreignGroups are API groups of CRDs the manifests may use, which the
// client-go scheme does not know: their objects are decoded as
// unstructured (still strictly as YAML) and checked by checkForeign.
var foreignGroups = []string{"cert-manager.io/"}

// The original image names in the base kustomization, by role.
const (
	ringtrainImageName = "ringtrain"
	etcdImageName      = "ringtrain-etcd"
	nonRootUID         = 65532
)

func TestKustomize(t *testing.T) {
	for _, dir := range kustomizeDirs {
		t.Run(strings.ReplaceAll(dir, "/", "_"), func(t *testing.T) {
			objs := render(t, dir)
			c := &k8sChecker{t: t, objs: objs, images: kustomizeImages(t, dir)}
			c.checkAll()
		})
	}
}

// render runs kustomize — the version pinned in tools/go.mod, through `go
// tool`, so that nothing but Go is needed — and decodes every object
// strictly: unknown or misspelled fields and kinds are errors.
func render(t *testing.T, dir string) []runtime.Object {
	t.Helper()
	cmd := exec.Command(goCommand(t), "tool", "-modfile=../tools/go.mod", "kustomize", "build", dir)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(cmd.Args, " "), err, stderr.String())
	}
	decoder := serializer.NewCodecFactory(scheme.Scheme, serializer.EnableStrict).UniversalDeserializer()
	var objs []runtime.Object
	for i, doc := range splitYAML(stdout.Bytes()) {
		obj, gvk, err := decoder.Decode(doc, nil, nil)
		if err != nil && runtime.IsNotRegisteredError(err) {
			if u, ok := decodeForeign(t, doc); ok {
				objs = append(objs, u)
				continue
			}
		}
		if err != nil {
			t.Errorf("%s: object %d: %v\n%s", dir, i, err, doc)
			continue
		}
		if gvk.Kind == "" {
			t.Errorf("%s: object %d has no kind", dir, i)
		}
		objs = append(objs, obj)
	}
	if len(objs) == 0 {
		t.Fatalf("%s rendered no objects", dir)
	}
	return objs
}

// decodeForeign decodes an object of a foreignGroups API group.
func decodeForeign(t *testing.T, doc []byte) (*unstructured.Unstructured, bool) {
	t.Helper()
	u := &unstructured.Unstructured{}
	if err := sigsyaml.UnmarshalStrict(doc, &u.Object); err != nil {
		return nil, false
	}
	for _, g := range foreignGroups {
		if strings.HasPrefix(u.GetAPIVersion(), g) {
			return u, true
		}
	}
	return nil, false
}

// splitYAML splits a multi-document YAML stream, dropping empty documents.
func splitYAML(b []byte) [][]byte {
	var docs [][]byte
	for _, d := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(b), -1) {
		if strings.TrimSpace(d) != "" {
			docs = append(docs, []byte(d))
		}
	}
	return docs
}

// kustomization is the part of kustomization.yaml the checks read.
type kustomization struct {
	Resources []string `yaml:"resources"`
	Images    []struct {
		Name    string `yaml:"name"`
		NewName string `yaml:"newName"`
		NewTag  string `yaml:"newTag"`
		Digest  string `yaml:"digest"`
	} `yaml:"images"`
	NamePrefix string `yaml:"namePrefix"`
	NameSuffix string `yaml:"nameSuffix"`
}

// kustomizeImages returns the final image reference of each original image
// name, applying the images lists from the innermost base outwards.
func kustomizeImages(t *testing.T, dir string) map[string]string {
	t.Helper()
	type ref struct{ name, tag string }
	current := map[string]*ref{} // original name → current reference
	var apply func(dir string)
	apply = func(dir string) {
		b, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		var k kustomization
		if err := yaml.Unmarshal(b, &k); err != nil {
			t.Fatalf("%s/kustomization.yaml: %v", dir, err)
		}
		if k.NamePrefix != "" || k.NameSuffix != "" {
			t.Errorf("%s: namePrefix/nameSuffix rename the etcd pods that --initial-cluster and --etcd name literally", dir)
		}
		for _, r := range k.Resources {
			if fi, err := os.Stat(filepath.Join(dir, r)); err == nil && fi.IsDir() {
				apply(filepath.Join(dir, r))
			}
		}
		for _, img := range k.Images {
			if img.Digest != "" {
				t.Errorf("%s: image %s: digests are not checked here; use newTag", dir, img.Name)
			}
			matched := false
			for _, r := range current {
				if r.name == img.Name {
					matched = true
					if img.NewName != "" {
						r.name = img.NewName
					}
					if img.NewTag != "" {
						r.tag = img.NewTag
					}
				}
			}
			if !matched {
				r := &ref{name: img.Name, tag: img.NewTag}
				if img.NewName != "" {
					r.name = img.NewName
				}
				current[img.Name] = r
			}
		}
	}
	apply(dir)
	out := map[string]string{}
	for orig, r := range current {
		out[orig] = r.name
		if r.tag != "" {
			out[orig] += ":" + r.tag
		}
	}
	for _, want := range []string{ringtrainImageName, etcdImageName} {
		if out[want] == "" {
			t.Errorf("%s: the kustomization images list has no entry for %q", dir, want)
		}
	}
	return out
}

// workload is a pod template with the object that owns it.
type workload struct {
	kind, name, namespace string
	replicas              int32
	selector              *metav1.LabelSelector
	template              corev1.PodTemplateSpec
	sts                   *appsv1.StatefulSet
}

func (w workload) String() string { return w.kind + "/" + w.name }

type k8sChecker struct {
	t         *testing.T
	objs      []runtime.Object
	images    map[string]string // original name → rendered reference
	workloads []workload
}

func (c *k8sChecker) checkAll() {
	t := c.t
	var services []*corev1.Service
	var pdbs []*policyv1.PodDisruptionBudget
	pvcs, configMaps, serviceAccounts := map[string]*corev1.PersistentVolumeClaim{}, map[string]bool{}, map[string]*corev1.ServiceAccount{}
	var foreign []*unstructured.Unstructured
	for _, o := range c.objs {
		switch o := o.(type) {
		case *appsv1.Deployment:
			c.workloads = append(c.workloads, workload{"Deployment", o.Name, o.Namespace, replicas(o.Spec.Replicas), o.Spec.Selector, o.Spec.Template, nil})
		case *appsv1.StatefulSet:
			c.workloads = append(c.workloads, workload{"StatefulSet", o.Name, o.Namespace, replicas(o.Spec.Replicas), o.Spec.Selector, o.Spec.Template, o})
		case *appsv1.DaemonSet, *appsv1.ReplicaSet, *corev1.Pod:
			t.Errorf("unexpected %T: the checks here cover Deployments and StatefulSets", o)
		case *corev1.Service:
			services = append(services, o)
		case *policyv1.PodDisruptionBudget:
			pdbs = append(pdbs, o)
		case *corev1.PersistentVolumeClaim:
			pvcs[o.Name] = o
		case *corev1.ConfigMap:
			configMaps[o.Name] = true
			if f, ok := o.Data["run.yaml"]; ok {
				checkRunFile(t, "ConfigMap/"+o.Name+" run.yaml", []byte(f))
			}
		case *corev1.ServiceAccount:
			serviceAccounts[o.Name] = o
			if o.AutomountServiceAccountToken == nil || *o.AutomountServiceAccountToken {
				t.Errorf("ServiceAccount/%s: automountServiceAccountToken must be false", o.Name)
			}
		case *rbacv1.Role, *rbacv1.ClusterRole, *rbacv1.RoleBinding, *rbacv1.ClusterRoleBinding:
			t.Errorf("%T: ringtrain needs no Kubernetes API access; bind no roles", o)
		case *unstructured.Unstructured:
			foreign = append(foreign, o)
		}
	}
	defer c.checkForeign(foreign)
	components := map[string]bool{}
	for _, w := range c.workloads {
		components[w.template.Labels["app.kubernetes.io/component"]] = true
		c.checkWorkload(w, pvcs, configMaps, serviceAccounts)
	}
	for _, want := range []string{"etcd", "coordinator", "worker"} {
		if !components[want] {
			t.Errorf("no workload with app.kubernetes.io/component=%s", want)
		}
	}
	for _, s := range services {
		c.checkService(s)
	}
	for _, w := range c.workloads {
		if w.sts != nil {
			c.checkHeadless(w, services)
		}
	}
	pdbFor := map[string]bool{}
	for _, p := range pdbs {
		for _, w := range c.selected(p.Namespace, p.Spec.Selector, "PodDisruptionBudget/"+p.Name) {
			pdbFor[w.template.Labels["app.kubernetes.io/component"]] = true
		}
	}
	for _, want := range []string{"coordinator", "worker"} {
		if !pdbFor[want] {
			t.Errorf("no PodDisruptionBudget selects the %s pods", want)
		}
	}
	c.checkEtcdTopology()
}

func replicas(r *int32) int32 {
	if r == nil {
		return 1
	}
	return *r
}

// selected returns the workloads whose pod templates sel matches; a selector
// that matches none is an error.
func (c *k8sChecker) selected(ns string, sel *metav1.LabelSelector, who string) []workload {
	c.t.Helper()
	if sel == nil {
		c.t.Errorf("%s: no selector", who)
		return nil
	}
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		c.t.Errorf("%s: selector: %v", who, err)
		return nil
	}
	if s.Empty() {
		c.t.Errorf("%s: an empty selector selects every pod", who)
		return nil
	}
	var out []workload
	for _, w := range c.workloads {
		if w.namespace == ns && s.Matches(labels.Set(w.template.Labels)) {
			out = append(out, w)
		}
	}
	if len(out) == 0 {
		c.t.Errorf("%s: selector %s matches no pod template", who, s)
	}
	return out
}

func (c *k8sChecker) checkWorkload(w workload, pvcs map[string]*corev1.PersistentVolumeClaim, configMaps map[string]bool, sas map[string]*corev1.ServiceAccount) {
	t := c.t
	if w.selector == nil {
		t.Errorf("%s: no selector", w)
	} else if s, err := metav1.LabelSelectorAsSelector(w.selector); err != nil || s.Empty() || !s.Matches(labels.Set(w.template.Labels)) {
		t.Errorf("%s: selector %v does not match its template labels %v (%v)", w, w.selector, w.template.Labels, err)
	}
	spec := w.template.Spec
	for _, tsc := range spec.TopologySpreadConstraints {
		if s, err := metav1.LabelSelectorAsSelector(tsc.LabelSelector); err != nil || !s.Matches(labels.Set(w.template.Labels)) {
			t.Errorf("%s: topologySpreadConstraint selector %v does not match its own pods", w, tsc.LabelSelector)
		}
	}

	// Identity: a token-less ServiceAccount from this kustomization.
	if sa := sas[spec.ServiceAccountName]; spec.ServiceAccountName == "" || sa == nil {
		t.Errorf("%s: serviceAccountName %q is not a ServiceAccount of this kustomization", w, spec.ServiceAccountName)
	}
	if spec.AutomountServiceAccountToken != nil && *spec.AutomountServiceAccountToken {
		t.Errorf("%s: automountServiceAccountToken must not be true", w)
	}
	if spec.EnableServiceLinks == nil || *spec.EnableServiceLinks {
		t.Errorf("%s: set enableServiceLinks: false (etcd reads ETCD_* variables, which a Service named etcd would inject)", w)
	}

	// Volumes: every mount has a volume; every claim and ConfigMap exists.
	vols := map[string]bool{}
	for _, v := range spec.Volumes {
		vols[v.Name] = true
		if v.PersistentVolumeClaim != nil && pvcs[v.PersistentVolumeClaim.ClaimName] == nil {
			t.Errorf("%s: volume %s claims %q, which is not in the kustomization", w, v.Name, v.PersistentVolumeClaim.ClaimName)
		}
		if v.ConfigMap != nil && !configMaps[v.ConfigMap.Name] {
			t.Errorf("%s: volume %s uses ConfigMap %q, which is not in the kustomization", w, v.Name, v.ConfigMap.Name)
		}
	}
	if w.sts != nil {
		for _, vct := range w.sts.Spec.VolumeClaimTemplates {
			vols[vct.Name] = true
		}
	}

	podSC := spec.SecurityContext
	if podSC == nil {
		podSC = &corev1.PodSecurityContext{}
	}
	all := append(append([]corev1.Container{}, spec.InitContainers...), spec.Containers...)
	for _, ctr := range all {
		where := fmt.Sprintf("%s container %s", w, ctr.Name)
		for _, m := range ctr.VolumeMounts {
			if !vols[m.Name] {
				t.Errorf("%s: volumeMount %s names no volume", where, m.Name)
			}
		}
		checkSecurity(t, where, podSC, ctr.SecurityContext)
		for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			if _, ok := ctr.Resources.Requests[res]; !ok {
				t.Errorf("%s: no %s request", where, res)
			}
			if _, ok := ctr.Resources.Limits[res]; !ok {
				t.Errorf("%s: no %s limit", where, res)
			}
		}
		c.checkProbes(where, ctr)
		c.checkEnvRefs(where, ctr)

		switch ctr.Image {
		case c.images[ringtrainImageName]:
			if len(ctr.Command) > 0 {
				t.Errorf("%s: command %q overrides the image's ENTRYPOINT /ringtrain; use args", where, ctr.Command)
			}
			sub, p := checkRingtrainArgs(t, where, ctr.Args)
			c.checkRingtrainRole(w, where, sub, p, pvcs)
		case c.images[etcdImageName]:
			// Flags are checked with the topology, against bin/etcd.
		default:
			t.Errorf("%s: image %q is not in the kustomization images list %v", where, ctr.Image, c.images)
		}
	}
}

// checkSecurity enforces the container hardening every pod here meets.
func checkSecurity(t *testing.T, where string, pod *corev1.PodSecurityContext, sc *corev1.SecurityContext) {
	t.Helper()
	if sc == nil {
		sc = &corev1.SecurityContext{}
	}
	nonRoot, uid := pod.RunAsNonRoot, pod.RunAsUser
	if sc.RunAsNonRoot != nil {
		nonRoot = sc.RunAsNonRoot
	}
	if sc.RunAsUser != nil {
		uid = sc.RunAsUser
	}
	if nonRoot == nil || !*nonRoot {
		t.Errorf("%s: runAsNonRoot must be true", where)
	}
	if uid == nil || *uid != nonRootUID {
		t.Errorf("%s: runAsUser must be %d", where, nonRootUID)
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Errorf("%s: readOnlyRootFilesystem must be true", where)
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Errorf("%s: allowPrivilegeEscalation must be false", where)
	}
	if sc.Privileged != nil && *sc.Privileged {
		t.Errorf("%s: must not be privileged", where)
	}
	dropsAll := false
	if sc.Capabilities != nil {
		for _, c := range sc.Capabilities.Drop {
			dropsAll = dropsAll || c == "ALL"
		}
		if len(sc.Capabilities.Add) > 0 {
			t.Errorf("%s: adds capabilities %v", where, sc.Capabilities.Add)
		}
	}
	if !dropsAll {
		t.Errorf("%s: capabilities must drop ALL", where)
	}
}

// checkForeign checks cert-manager objects: every Certificate names an
// Issuer of the render and has the run's organizational unit. A CA (the
// run's intermediate, what --ca-dir loads) has a Secret that the
// coordinators mount — and only they, never the workers, who must not hold
// a signing key. Any other Certificate is etcd's: a ringtrain identity
// (spiffe://ringtrain/<run>/etcd-server/...) for servers and clients, whose
// Secret only the etcd pods mount.
func (c *k8sChecker) checkForeign(objs []*unstructured.Unstructured) {
	t := c.t
	issuers := map[string]bool{}
	for _, o := range objs {
		switch o.GetKind() {
		case "Issuer", "ClusterIssuer":
			issuers[o.GetKind()+"/"+o.GetName()] = true
		case "Certificate":
		default:
			t.Errorf("%s %s/%s: the checks here cover cert-manager Issuers and Certificates", o.GetAPIVersion(), o.GetKind(), o.GetName())
		}
	}
	for _, o := range objs {
		if o.GetKind() != "Certificate" {
			continue
		}
		where := "Certificate/" + o.GetName()
		kind, _, _ := unstructured.NestedString(o.Object, "spec", "issuerRef", "kind")
		name, _, _ := unstructured.NestedString(o.Object, "spec", "issuerRef", "name")
		if !issuers[kind+"/"+name] {
			t.Errorf("%s: issuerRef %s/%s is not in the render", where, kind, name)
		}
		ous, _, _ := unstructured.NestedStringSlice(o.Object, "spec", "subject", "organizationalUnits")
		if len(ous) != 1 {
			t.Errorf("%s: subject.organizationalUnits must be the run's name alone, got %v", where, ous)
		}
		secret, _, _ := unstructured.NestedString(o.Object, "spec", "secretName")
		mountedBy := "coordinator"
		if isCA, _, _ := unstructured.NestedBool(o.Object, "spec", "isCA"); !isCA {
			mountedBy = "etcd"
			c.checkEtcdCertificate(where, o, ous)
		}
		for _, w := range c.workloads {
			comp := w.template.Labels["app.kubernetes.io/component"]
			if mounts := mountsSecret(w.template.Spec, secret); mounts != (comp == mountedBy) {
				t.Errorf("%s: Secret %s mounted by %s: %v; want the %s pods only", where, secret, w, mounts, mountedBy)
			}
		}
	}
}

// checkEtcdCertificate checks a cert-manager Certificate that is not a CA:
// etcd's, used for clients and peers, naming a ringtrain identity of the
// run (which ringtrain's etcd clients check) and every etcd member's host
// name (which etcd's peers check).
func (c *k8sChecker) checkEtcdCertificate(where string, o *unstructured.Unstructured, ous []string) {
	t := c.t
	uris, _, _ := unstructured.NestedStringSlice(o.Object, "spec", "uris")
	if len(ous) != 1 || len(uris) != 1 || !strings.HasPrefix(uris[0], "spiffe://ringtrain/"+ous[0]+"/etcd-server/") {
		t.Errorf("%s: a certificate that is not a CA must be etcd's, with the URI spiffe://ringtrain/<run>/etcd-server/<name>; got %v (run %v)", where, uris, ous)
	}
	usages, _, _ := unstructured.NestedStringSlice(o.Object, "spec", "usages")
	for _, u := range []string{"server auth", "client auth"} {
		if !slices.Contains(usages, u) {
			t.Errorf("%s: usages %v lack %q (etcd's members are servers and, to each other, clients)", where, usages, u)
		}
	}
	dns, _, _ := unstructured.NestedStringSlice(o.Object, "spec", "dnsNames")
	for _, w := range c.workloads {
		if w.sts == nil || w.template.Labels["app.kubernetes.io/component"] != "etcd" {
			continue
		}
		for i := range int(w.replicas) {
			if h := fmt.Sprintf("%s-%d.%s", w.name, i, w.sts.Spec.ServiceName); !slices.Contains(dns, h) {
				t.Errorf("%s: dnsNames %v lack the member %s", where, dns, h)
			}
		}
	}
}

// mountsSecret reports whether a pod mounts Secret name, directly or
// projected.
func mountsSecret(spec corev1.PodSpec, name string) bool {
	for _, v := range spec.Volumes {
		if v.Secret != nil && v.Secret.SecretName == name {
			return true
		}
		if v.Projected != nil {
			for _, src := range v.Projected.Sources {
				if src.Secret != nil && src.Secret.Name == name {
					return true
				}
			}
		}
	}
	return false
}

// checkProbes requires that every probe's port is a declared container port.
func (c *k8sChecker) checkProbes(where string, ctr corev1.Container) {
	probes := map[string]*corev1.Probe{"readinessProbe": ctr.ReadinessProbe, "livenessProbe": ctr.LivenessProbe, "startupProbe": ctr.StartupProbe}
	if ctr.ReadinessProbe == nil || ctr.LivenessProbe == nil {
		c.t.Errorf("%s: needs a readinessProbe and a livenessProbe", where)
	}
	for kind, p := range probes {
		if p == nil {
			continue
		}
		var port intstr.IntOrString
		switch {
		case p.GRPC != nil:
			port = intstr.FromInt32(p.GRPC.Port)
		case p.HTTPGet != nil:
			port = p.HTTPGet.Port
		case p.TCPSocket != nil:
			port = p.TCPSocket.Port
		default:
			continue // exec probes name no port
		}
		if !hasPort(ctr, port, corev1.ProtocolTCP) {
			c.t.Errorf("%s: %s port %s is not a declared TCP containerPort", where, kind, port.String())
		}
	}
}

func hasPort(ctr corev1.Container, port intstr.IntOrString, proto corev1.Protocol) bool {
	for _, p := range ctr.Ports {
		pp := p.Protocol
		if pp == "" {
			pp = corev1.ProtocolTCP
		}
		if pp != proto {
			continue
		}
		if (port.Type == intstr.String && p.Name == port.StrVal) || (port.Type == intstr.Int && p.ContainerPort == port.IntVal) {
			return true
		}
	}
	return false
}

var envRef = regexp.MustCompile(`\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// checkEnvRefs requires $(VAR) in command and args to be defined in env, and
// the pod identity variables to come from the right fields.
func (c *k8sChecker) checkEnvRefs(where string, ctr corev1.Container) {
	env := map[string]corev1.EnvVar{}
	for _, e := range ctr.Env {
		env[e.Name] = e
	}
	for _, a := range append(append([]string{}, ctr.Command...), ctr.Args...) {
		for _, m := range envRef.FindAllStringSubmatch(a, -1) {
			if m[1] != "" {
				if _, ok := env[m[1]]; !ok {
					c.t.Errorf("%s: %q refers to $(%s), which is not in its env (Kubernetes would pass it literally)", where, a, m[1])
				}
			}
		}
	}
	for name, path := range map[string]string{"POD_NAME": "metadata.name", "POD_IP": "status.podIP", "POD_NAMESPACE": "metadata.namespace"} {
		if e, ok := env[name]; ok {
			if e.ValueFrom == nil || e.ValueFrom.FieldRef == nil || e.ValueFrom.FieldRef.FieldPath != path {
				c.t.Errorf("%s: env %s must come from fieldRef %s", where, name, path)
			}
		}
	}
}

// checkRingtrainRole checks what each ringtrain role needs of its pod.
func (c *k8sChecker) checkRingtrainRole(w workload, where, sub string, p parsedArgs, pvcs map[string]*corev1.PersistentVolumeClaim) {
	t := c.t
	mounts := map[string]string{} // mount path → volume name
	for _, ctr := range w.template.Spec.Containers {
		for _, m := range ctr.VolumeMounts {
			mounts[m.MountPath] = m.Name
		}
	}
	if p.Flags["etcd"] == "" {
		t.Errorf("%s: ringtrain %s without --etcd", where, sub)
	}
	if cfg := p.Flags["config"]; cfg != "" && mounts[filepath.Dir(cfg)] == "" {
		t.Errorf("%s: --config %s is not under a mounted volume", where, cfg)
	}
	switch sub {
	case "coordinator":
		if w.kind != "Deployment" || w.replicas < 2 {
			t.Errorf("%s: coordinators should be a Deployment with at least 2 replicas, got %s with %d", where, w.kind, w.replicas)
		}
		for _, f := range []string{"id", "run"} {
			if p.Flags[f] == "" {
				t.Errorf("%s: coordinator without --%s", where, f)
			}
		}
		checkProvisioner(t, where, p)
		// A coordinator's --checkpoint-dir only shows the workers'
		// checkpoints on its dashboard: it must be where they are.
		if dir, ok := p.Flags["checkpoint-dir"]; ok && mounts[dir] == "" {
			t.Errorf("%s: coordinator --checkpoint-dir %q is not a mounted volume; give it only with the checkpoints volume mounted", where, dir)
		}
	case "worker":
		if w.sts == nil || w.sts.Spec.PodManagementPolicy != appsv1.ParallelPodManagement {
			t.Errorf("%s: workers should be a StatefulSet with podManagementPolicy Parallel", where)
		}
		if p.Flags["id"] != "$(POD_NAME)" {
			t.Errorf("%s: --id should be $(POD_NAME), a name the worker keeps across restarts; got %q", where, p.Flags["id"])
		}
		if !strings.HasPrefix(p.Flags["advertise"], "$(POD_IP):") {
			t.Errorf("%s: --advertise should be $(POD_IP):PORT; got %q", where, p.Flags["advertise"])
		}
		dir := p.Flags["checkpoint-dir"]
		vol := mounts[dir]
		if dir == "" || vol == "" {
			t.Errorf("%s: --checkpoint-dir %q must be a mounted volume", where, dir)
			return
		}
		for _, v := range w.template.Spec.Volumes {
			if v.Name != vol {
				continue
			}
			if v.PersistentVolumeClaim == nil {
				t.Errorf("%s: checkpoints volume %s must be the shared PersistentVolumeClaim", where, vol)
			} else if pvc := pvcs[v.PersistentVolumeClaim.ClaimName]; pvc != nil && !hasAccessMode(pvc, corev1.ReadWriteMany) {
				t.Errorf("%s: PersistentVolumeClaim %s is shared by all workers and must be ReadWriteMany", where, pvc.Name)
			}
		}
	}
	for _, f := range []string{"listen", "http-addr", "gossip-listen"} {
		if v := p.Flags[f]; v != "" {
			if _, port, ok := strings.Cut(v, ":"); ok {
				n, _ := strconv.Atoi(port)
				if !hasPort(w.template.Spec.Containers[0], intstr.FromInt(n), corev1.ProtocolTCP) {
					t.Errorf("%s: --%s %s listens on a port the container does not declare", where, f, v)
				}
			}
		}
	}
}

func hasAccessMode(pvc *corev1.PersistentVolumeClaim, m corev1.PersistentVolumeAccessMode) bool {
	for _, a := range pvc.Spec.AccessModes {
		if a == m {
			return true
		}
	}
	return false
}

// checkService requires the selector to match pods and named target ports to exist.
func (c *k8sChecker) checkService(s *corev1.Service) {
	if len(s.Spec.Selector) == 0 {
		c.t.Errorf("Service/%s: no selector", s.Name)
		return
	}
	ws := c.selected(s.Namespace, &metav1.LabelSelector{MatchLabels: s.Spec.Selector}, "Service/"+s.Name)
	for _, sp := range s.Spec.Ports {
		tp := sp.TargetPort
		if tp.Type == intstr.Int && tp.IntVal == 0 {
			tp = intstr.FromInt32(sp.Port)
		}
		proto := sp.Protocol
		if proto == "" {
			proto = corev1.ProtocolTCP
		}
		for _, w := range ws {
			found := false
			for _, ctr := range w.template.Spec.Containers {
				found = found || hasPort(ctr, tp, proto)
			}
			if !found {
				c.t.Errorf("Service/%s port %s: target %s/%s is not a containerPort of %s", s.Name, sp.Name, tp.String(), proto, w)
			}
		}
	}
}

// checkHeadless requires a StatefulSet's serviceName to be a headless Service
// that selects its pods and publishes them before they are ready.
func (c *k8sChecker) checkHeadless(w workload, services []*corev1.Service) {
	name := w.sts.Spec.ServiceName
	for _, s := range services {
		if s.Name != name || s.Namespace != w.namespace {
			continue
		}
		if s.Spec.ClusterIP != corev1.ClusterIPNone {
			c.t.Errorf("%s: serviceName %s is not headless (clusterIP: None)", w, name)
		}
		if !labels.SelectorFromSet(s.Spec.Selector).Matches(labels.Set(w.template.Labels)) {
			c.t.Errorf("%s: headless Service %s does not select its pods", w, name)
		}
		if !s.Spec.PublishNotReadyAddresses {
			c.t.Errorf("%s: headless Service %s should publishNotReadyAddresses so that peers resolve before readiness", w, name)
		}
		return
	}
	c.t.Errorf("%s: serviceName %q has no Service", w, name)
}

// checkEtcdTopology checks the etcd StatefulSet's --initial-cluster against
// its replicas and headless Service, and every --etcd endpoint against it.
func (c *k8sChecker) checkEtcdTopology() {
	t := c.t
	var etcd *workload
	for i, w := range c.workloads {
		for _, ctr := range w.template.Spec.Containers {
			if ctr.Image == c.images[etcdImageName] {
				etcd = &c.workloads[i]
			}
		}
	}
	if etcd == nil || etcd.sts == nil {
		t.Errorf("no etcd StatefulSet (image %s)", c.images[etcdImageName])
		return
	}
	svc := etcd.sts.Spec.ServiceName
	ctr := etcd.template.Spec.Containers[0]
	if len(ctr.Command) > 0 {
		t.Errorf("%s: command overrides the image's ENTRYPOINT; use args", etcd)
	}
	if etcd.sts.Spec.PodManagementPolicy != appsv1.ParallelPodManagement {
		t.Errorf("%s: podManagementPolicy must be Parallel: with OrderedReady etcd-0 waits for a quorum that cannot form", etcd)
	}
	p := checkEtcdArgs(t, etcd.String(), ctr.Args, etcdFlags(t))
	checkEtcdSecure(t, etcd.String(), p, func(file string) bool { return mountedFromSecret(etcd.template.Spec, ctr, file) })
	if p.Flags["name"] != "$(POD_NAME)" {
		t.Errorf("%s: --name must be $(POD_NAME), got %q", etcd, p.Flags["name"])
	}
	for _, f := range []string{"initial-advertise-peer-urls", "advertise-client-urls"} {
		if !strings.Contains(p.Flags[f], "$(POD_NAME)."+svc+":") {
			t.Errorf("%s: --%s %q should advertise $(POD_NAME).%s", etcd, f, p.Flags[f], svc)
		}
	}
	// --initial-cluster=etcd-0=http://etcd-0.etcd:2380,...
	members := strings.Split(p.Flags["initial-cluster"], ",")
	if len(members) != int(etcd.replicas) {
		t.Errorf("%s: --initial-cluster has %d members for %d replicas", etcd, len(members), etcd.replicas)
	}
	hosts := map[string]bool{}
	for i, m := range members {
		name, u, _ := strings.Cut(m, "=")
		want := fmt.Sprintf("%s-%d", etcd.name, i)
		pu, err := url.Parse(u)
		if name != want || err != nil || pu.Scheme != "https" || !strings.HasPrefix(pu.Host, want+"."+svc) || pu.Port() != "2380" {
			t.Errorf("%s: --initial-cluster member %d is %q, want %s=https://%s.%s:2380", etcd, i, m, want, want, svc)
		}
		hosts[want+"."+svc] = true
	}
	// Every ringtrain --etcd endpoint must be a member's client URL.
	for _, w := range c.workloads {
		for _, ctr := range w.template.Spec.Containers {
			if ctr.Image != c.images[ringtrainImageName] {
				continue
			}
			for _, a := range ctr.Args {
				v, ok := strings.CutPrefix(a, "--etcd=")
				if !ok {
					continue
				}
				for _, ep := range strings.Split(v, ",") {
					u, err := url.Parse(ep)
					if err != nil || !hosts[u.Hostname()] || u.Port() != "2379" || u.Scheme != "https" {
						t.Errorf("%s: --etcd endpoint %q is not the https:// client URL of an etcd member %v", w, ep, sortedKeys(hosts))
					}
				}
			}
		}
	}
}

// mountedFromSecret reports whether file lies on a volume of ctr that comes
// from a Secret (directly or projected).
func mountedFromSecret(spec corev1.PodSpec, ctr corev1.Container, file string) bool {
	for _, m := range ctr.VolumeMounts {
		if !strings.HasPrefix(file, strings.TrimSuffix(m.MountPath, "/")+"/") {
			continue
		}
		for _, v := range spec.Volumes {
			if v.Name != m.Name {
				continue
			}
			if v.Secret != nil {
				return true
			}
			if v.Projected != nil {
				for _, src := range v.Projected.Sources {
					if src.Secret != nil {
						return true
					}
				}
			}
		}
	}
	return false
}
