package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	redisv1alpha1 "github.com/incusops/redis-sentinel-operator/api/v1alpha1"
	"github.com/incusops/redis-sentinel-operator/controllers"
)

// hostLabel is the namespace label the test hosts admit.
const hostLabel = "e2e.redis.incusops.io/host"

// newHost creates an IncusHost on the lab's incusd with the schema's
// (the lab's) allowlist, changed by mutate, and deletes it at cleanup.
func newHost(t *testing.T, name string, mutate func(*redisv1alpha1.IncusHost)) *redisv1alpha1.IncusHost {
	t.Helper()
	h := &redisv1alpha1.IncusHost{ObjectMeta: metav1.ObjectMeta{Name: name}}
	mutate(h)
	if err := k8s.Create(context.Background(), h); err != nil {
		t.Fatalf("creating IncusHost %s: %v", name, err)
	}
	t.Cleanup(func() {
		// Runs after the formations on it were deleted: the in-use
		// finalizer must let it go then.
		if err := k8s.Delete(context.Background(), h); client.IgnoreNotFound(err) != nil {
			t.Error(err)
		}
		eventually(t, 30*time.Second, "IncusHost "+name+" deleted", func() (bool, string) {
			err := k8s.Get(context.Background(), client.ObjectKey{Name: name}, &redisv1alpha1.IncusHost{})
			return apierrors.IsNotFound(err), fmt.Sprintf("%v", err)
		})
	})
	return h
}

// labelledNamespace creates a namespace carrying the test hosts' label.
func labelledNamespace(t *testing.T, name, host string) {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{hostLabel: host}}}
	if err := k8s.Create(context.Background(), ns); err != nil {
		t.Fatal(err)
	}
}

func ownedInstances(t *testing.T, f *redisv1alpha1.RedisSentinelFormation) int {
	t.Helper()
	owned, err := incusSrv.ListInstances(context.Background(), "user.rsf.formation-uid", string(f.UID))
	if err != nil {
		t.Fatal(err)
	}
	return len(owned)
}

// TestIncusHostPlacement: the lab's host reports the real server; a host
// admits only the namespaces it selects and only what its allowlist names;
// every refusal names the field, creates nothing, and lifts once the input
// is fixed (the spec, or the namespace's labels); the host's default limits
// reach the containers.
func TestIncusHostPlacement(t *testing.T) {
	c := stack(t)
	ctx := context.Background()
	eventually(t, time.Minute, "the lab's host Reachable with its version", func() (bool, string) {
		h := &redisv1alpha1.IncusHost{}
		if err := c.Get(ctx, client.ObjectKey{Name: "local"}, h); err != nil {
			return false, err.Error()
		}
		return meta.IsStatusConditionTrue(h.Status.Conditions, redisv1alpha1.HostConditionReachable) && h.Status.ServerVersion != "",
			fmt.Sprintf("%+v", h.Status)
	})

	host := uniqueName("team-host")
	newHost(t, host, func(h *redisv1alpha1.IncusHost) {
		h.Spec.NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{hostLabel: host}}
		h.Spec.DefaultLimits.Memory = "512MiB"
		h.Spec.MaxLimits.Memory = "1GiB"
	})
	onHost := func(more func(*redisv1alpha1.IncusSpec)) formationOpts {
		return formationOpts{mutate: func(f *redisv1alpha1.RedisSentinelFormation) {
			f.Spec.Incus.HostRef = host
			more(&f.Spec.Incus)
		}}
	}
	cases := []struct {
		name      string
		admitted  bool
		change    func(*redisv1alpha1.IncusSpec)
		reason    string
		field     string
		fix       func(t *testing.T, f *redisv1alpha1.RedisSentinelFormation)
		wantReady bool
		// deleteHost deletes the host under the Ready formation: it must
		// be kept while formations live on it.
		deleteHost bool
	}{
		{name: "namespace not selected", change: func(*redisv1alpha1.IncusSpec) {}, reason: controllers.ReasonNamespaceNotAdmitted, field: "does not admit namespace",
			fix: func(t *testing.T, f *redisv1alpha1.RedisSentinelFormation) {
				ns := &corev1.Namespace{}
				if err := k8s.Get(ctx, client.ObjectKey{Name: f.Namespace}, ns); err != nil {
					t.Fatal(err)
				}
				patch := client.MergeFrom(ns.DeepCopy())
				ns.Labels = map[string]string{hostLabel: host}
				if err := k8s.Patch(ctx, ns, patch); err != nil {
					t.Fatal(err)
				}
			}, wantReady: true},
		{name: "privileged profile", admitted: true, change: func(s *redisv1alpha1.IncusSpec) { s.Profiles = []string{"rsf-redis", "default"} },
			reason: controllers.ReasonNotAllowedByHost, field: "spec.incus.profiles",
			fix: func(t *testing.T, f *redisv1alpha1.RedisSentinelFormation) {
				update(t, f, func(s *redisv1alpha1.RedisSentinelFormationSpec) { s.Incus.Profiles = []string{"rsf-redis"} })
			}, wantReady: true, deleteHost: true},
		{name: "network", admitted: true, change: func(s *redisv1alpha1.IncusSpec) { s.Network = "incusbr0" }, reason: controllers.ReasonNotAllowedByHost, field: "spec.incus.network"},
		{name: "storage pool", admitted: true, change: func(s *redisv1alpha1.IncusSpec) { s.StoragePool = "default" }, reason: controllers.ReasonNotAllowedByHost, field: "spec.incus.storagePool"},
		{name: "project", admitted: true, change: func(s *redisv1alpha1.IncusSpec) { s.Project = "other-team" }, reason: controllers.ReasonNotAllowedByHost, field: "spec.incus.project"},
		{name: "image", admitted: true, change: func(s *redisv1alpha1.IncusSpec) { s.Image = "debian-12" }, reason: controllers.ReasonNotAllowedByHost, field: "spec.incus.image"},
		{name: "memory above the maximum", admitted: true, change: func(s *redisv1alpha1.IncusSpec) { s.Limits.Memory = "2GiB" }, reason: controllers.ReasonNotAllowedByHost, field: "spec.incus.limits.memory"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			name := uniqueName("placed")
			if tc.admitted {
				labelledNamespace(t, name, host)
			}
			f := newNamedFormation(t, name, onHost(tc.change))
			cur := waitCondition(t, f, time.Minute, redisv1alpha1.ConditionDegraded, metav1.ConditionTrue, tc.reason)
			msg := conditionMessage(cur, redisv1alpha1.ConditionDegraded)
			t.Logf("%s: %s", tc.reason, msg)
			if !strings.Contains(msg, tc.field) || cur.Status.Phase != redisv1alpha1.PhaseBlocked {
				t.Fatalf("phase %s, message %q does not name %q", cur.Status.Phase, msg, tc.field)
			}
			waitWarningEvent(t, f, tc.reason)
			// Let a few passes run: still nothing created.
			time.Sleep(3 * time.Second)
			if n := ownedInstances(t, f); n != 0 {
				t.Fatalf("%d instances created for a refused formation", n)
			}
			if tc.fix == nil {
				return
			}
			tc.fix(t, f)
			cur = readyAfter(t, f, 3*time.Minute)
			if cur.Status.IncusHost != host {
				t.Errorf("status.incusHost %q, want %s", cur.Status.IncusHost, host)
			}
			owned, err := incusSrv.ListInstances(ctx, "user.rsf.formation-uid", string(cur.UID))
			if err != nil || len(owned) != 3 {
				t.Fatalf("%d instances (%v)", len(owned), err)
			}
			for _, inst := range owned {
				if inst.Config["limits.memory"] != "512MiB" {
					t.Errorf("%s limits.memory %q, want the host's default 512MiB", inst.Name, inst.Config["limits.memory"])
				}
			}
			if !tc.deleteHost {
				return
			}
			if err := k8s.Delete(ctx, &redisv1alpha1.IncusHost{ObjectMeta: metav1.ObjectMeta{Name: host}}); err != nil {
				t.Fatal(err)
			}
			eventually(t, 30*time.Second, "the deleted host kept, InUse naming the formation", func() (bool, string) {
				h := &redisv1alpha1.IncusHost{}
				if err := k8s.Get(ctx, client.ObjectKey{Name: host}, h); err != nil {
					return false, err.Error()
				}
				c := meta.FindStatusCondition(h.Status.Conditions, redisv1alpha1.HostConditionInUse)
				return c != nil && c.Status == metav1.ConditionTrue && strings.Contains(c.Message, f.Namespace+"/"+f.Name), fmt.Sprintf("%+v", c)
			})
			if cur := get(t, f); cur.Status.Phase != redisv1alpha1.PhaseReady {
				t.Errorf("the formation left Ready when its host was deleted: %s", cur.Status.Phase)
			}
		})
	}
}

// waitWarningEvent waits for a Warning Event with reason on the formation.
func waitWarningEvent(t *testing.T, f *redisv1alpha1.RedisSentinelFormation, reason string) {
	t.Helper()
	eventually(t, 30*time.Second, "a Warning Event "+reason, func() (bool, string) {
		for _, e := range events(t, f, reason) {
			if e.Type == corev1.EventTypeWarning {
				return true, ""
			}
		}
		return false, "none"
	})
}
