// Package config_test checks the shipped manifests for the security
// properties docs/security.md promises, so they cannot silently regress.
package config_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"

	"github.com/incusops/redis-sentinel-operator/internal/testenv"
)

// objects returns the shipped objects of kind in the kustomization dir.
func objects[T any](t *testing.T, dir, kind string) []T {
	t.Helper()
	all, err := testenv.Manifests(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []T
	for _, u := range all {
		if u.GetKind() != kind {
			continue
		}
		var obj T
		if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(u.Object, &obj, true); err != nil {
			t.Fatalf("%s %s: %v", kind, u.GetName(), err)
		}
		out = append(out, obj)
	}
	return out
}

func grantsSecrets(rules []rbacv1.PolicyRule) bool {
	for _, r := range rules {
		if (slices.Contains(r.APIGroups, "") || slices.Contains(r.APIGroups, "*")) &&
			(slices.Contains(r.Resources, "secrets") || slices.Contains(r.Resources, "*")) {
			return true
		}
	}
	return false
}

func TestRBACGrantsNoClusterWideSecrets(t *testing.T) {
	roles := map[string]rbacv1.ClusterRole{}
	for _, r := range objects[rbacv1.ClusterRole](t, "rbac", "ClusterRole") {
		roles[r.Name] = r
	}
	bindings := objects[rbacv1.ClusterRoleBinding](t, "rbac", "ClusterRoleBinding")
	if len(bindings) == 0 {
		t.Fatal("no ClusterRoleBinding: the operator could not watch formations")
	}
	for _, b := range bindings {
		role, ok := roles[b.RoleRef.Name]
		if !ok {
			t.Fatalf("ClusterRoleBinding %s binds %s, which the manifests do not define", b.Name, b.RoleRef.Name)
		}
		if grantsSecrets(role.Rules) {
			t.Errorf("ClusterRoleBinding %s grants Secrets cluster-wide through %s", b.Name, role.Name)
		}
	}
	secrets, ok := roles["rsf-formation-secrets"]
	if !ok || !grantsSecrets(secrets.Rules) {
		t.Fatalf("the rsf-formation-secrets ClusterRole (bound per namespace) is missing or grants no Secret: %+v", secrets)
	}
	reader := roles["rsf-metrics-reader"].Rules
	if len(reader) != 1 || len(reader[0].Resources) > 0 || !slices.Equal(reader[0].NonResourceURLs, []string{"/metrics"}) || !slices.Equal(reader[0].Verbs, []string{"get"}) {
		t.Errorf("rsf-metrics-reader may GET /metrics and nothing else: %+v", reader)
	}
	for _, role := range objects[rbacv1.Role](t, "rbac", "Role") {
		if grantsSecrets(role.Rules) && role.Namespace != "rsf-system" {
			t.Errorf("Role %s/%s grants Secrets outside the operator's namespace", role.Namespace, role.Name)
		}
		for _, r := range role.Rules {
			if slices.Contains(r.Resources, "secrets") && !slices.Equal(r.Verbs, []string{"get"}) {
				t.Errorf("Role %s/%s: Secrets in the operator's namespace are only read (get), not %v", role.Namespace, role.Name, r.Verbs)
			}
		}
	}
}

func TestDeploymentIsHardened(t *testing.T) {
	deployments := objects[appsv1.Deployment](t, "manager", "Deployment")
	if len(deployments) != 1 {
		t.Fatalf("%d Deployments, want 1", len(deployments))
	}
	pod := deployments[0].Spec.Template.Spec
	psc := pod.SecurityContext
	switch {
	case psc == nil:
		t.Fatal("no pod securityContext")
	case psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser == 0:
		t.Errorf("the pod must run as a non-root user: %+v", psc)
	case len(psc.SupplementalGroups) != 1 || psc.SupplementalGroups[0] == 0:
		t.Errorf("one supplemental group, the Incus socket's (not root's): %v", psc.SupplementalGroups)
	case psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault:
		t.Errorf("seccomp profile RuntimeDefault: %+v", psc.SeccompProfile)
	}
	for _, v := range pod.Volumes {
		if v.HostPath != nil && (v.HostPath.Path != "/var/lib/incus/unix.socket" || v.HostPath.Type == nil || *v.HostPath.Type != corev1.HostPathSocket) {
			t.Errorf("volume %s: the only host path is the Incus socket: %+v", v.Name, v.HostPath)
		}
	}
	var kust struct {
		Images []struct{ Name, NewName, NewTag, Digest string }
	}
	raw, err := os.ReadFile(filepath.Join("manager", "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(raw, &kust); err != nil {
		t.Fatal(err)
	}
	for _, c := range slices.Concat(pod.InitContainers, pod.Containers) {
		sc := c.SecurityContext
		switch {
		case sc == nil:
			t.Fatalf("container %s: no securityContext", c.Name)
		case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
			t.Errorf("container %s: allowPrivilegeEscalation must be false", c.Name)
		case sc.Privileged != nil && *sc.Privileged:
			t.Errorf("container %s: privileged", c.Name)
		case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
			t.Errorf("container %s: readOnlyRootFilesystem must be true", c.Name)
		case sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0:
			t.Errorf("container %s: capabilities must drop ALL and add none: %+v", c.Name, sc.Capabilities)
		}
		pinned := false
		for _, img := range kust.Images {
			if img.Name == c.Image {
				pinned = img.Digest != "" || img.NewTag != "" && img.NewTag != "latest"
			}
		}
		if !pinned {
			t.Errorf("container %s: image %s is not pinned to a version or digest by config/manager/kustomization.yaml", c.Name, c.Image)
		}
		if !metricsProtected(c.Args) {
			t.Errorf("container %s: metrics must be served with --metrics-secure or on a loopback address: %v", c.Name, c.Args)
		}
	}
}

// metricsProtected: --metrics-secure, or a loopback or disabled address
// (main.go's default is 127.0.0.1:8080).
func metricsProtected(args []string) bool {
	addr := "127.0.0.1:8080"
	for _, a := range args {
		if a == "--metrics-secure" || a == "--metrics-secure=true" {
			return true
		}
		if v, ok := strings.CutPrefix(a, "--metrics-bind-address="); ok {
			addr = v
		}
	}
	return addr == "0" || strings.HasPrefix(addr, "127.") || strings.HasPrefix(addr, "localhost:") || strings.HasPrefix(addr, "[::1]:")
}
