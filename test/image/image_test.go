// Package image_test runs the operator's shipped image as a cluster runs
// it: `make deploy` applies the manifests to a real kube-apiserver, and the
// Deployment's pod is run by podman from its template (image pinned by
// digest, command line, environment, non-root user, read-only root, no
// capabilities, host network, the Incus socket) with a token of its
// ServiceAccount from the TokenRequest API. docs/deploy.md says why podman
// stands in for a kubelet on these machines.
package image_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	redisv1alpha1 "github.com/incusops/redis-sentinel-operator/api/v1alpha1"
	"github.com/incusops/redis-sentinel-operator/controllers"
	"github.com/incusops/redis-sentinel-operator/internal/incus"
	"github.com/incusops/redis-sentinel-operator/test/harness"
)

// TestShippedImage: the pod answers its probes, takes the leader lease,
// brings a formation to Ready, and its ServiceAccount is refused what the
// shipped RBAC does not grant.
func TestShippedImage(t *testing.T) {
	s := harness.Deploy(t)
	ctx := context.Background()
	pod := s.Run(t, harness.PodOptions{Name: podName("one")})

	for _, path := range []string{"/healthz", "/readyz"} {
		eventually(t, time.Minute, pod.Name+" answers "+path, func() (bool, string) { return probe(pod, path) })
	}
	lease := s.WaitLeader(t, time.Minute, pod)
	t.Logf("leader lease held by %s", *lease.Spec.HolderIdentity)

	// The ServiceAccount, through its own token, as the pod uses it.
	asOperator := s.ServiceAccountClient(t)
	if err := asOperator.List(ctx, &corev1.SecretList{}); !apierrors.IsForbidden(err) {
		t.Errorf("the ServiceAccount listed every Secret: err %v, want Forbidden", err)
	}
	if err := asOperator.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "rsf-probe", Namespace: "kube-system"}}); !apierrors.IsForbidden(err) {
		t.Errorf("the ServiceAccount created a Secret in kube-system: err %v, want Forbidden", err)
	}
	if err := asOperator.List(ctx, &redisv1alpha1.RedisSentinelFormationList{}); err != nil {
		t.Errorf("the ServiceAccount cannot list formations: %v", err)
	}

	f := newFormation(t, s, "img")
	start := time.Now()
	cur := waitReady(t, s, f, 4*time.Minute)
	t.Logf("formation %s Ready %.1f s after it was applied, master %s", f.Name, time.Since(start).Seconds(), cur.Status.Master.Member)
	if !pod.Running(ctx) {
		t.Fatalf("the pod stopped")
	}
}

// TestLeaderHandover: two replicas; the leader is SIGKILLed together with
// the formation's master. The other replica takes the lease once it has
// expired, and records Sentinel's failover in status exactly once.
func TestLeaderHandover(t *testing.T) {
	s := harness.Deploy(t)
	ctx := context.Background()
	first := s.Run(t, harness.PodOptions{Name: podName("a")})
	leader := s.WaitLeader(t, time.Minute, first)
	second := s.RunSecond(t, podName("b"))
	eventually(t, time.Minute, second.Name+" ready", func() (bool, string) { return probe(second, "/readyz") })
	// Created after both replicas, so deleted (by the one then leading)
	// before either is removed.
	f := newFormation(t, s, "handover")
	cur := waitReady(t, s, f, 4*time.Minute)
	s.WaitLeader(t, time.Second, first) // still: only one replica leads

	failovers := cur.Status.Failovers
	oldMaster := cur.Status.Master.Member
	killed := time.Now()
	if err := first.Kill(ctx); err != nil {
		t.Fatal(err)
	}
	incusSrv, err := incus.Connect(ctx, incus.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := incusSrv.StopInstance(ctx, memberInstance(cur, oldMaster), true); err != nil {
		t.Fatal(err)
	}
	next := s.WaitLeader(t, time.Minute, second)
	handover := time.Since(killed)
	t.Logf("leader SIGKILLed with the master's container; lease taken by %s %.1f s later (lease duration %d s)",
		*next.Spec.HolderIdentity, handover.Seconds(), *leader.Spec.LeaseDurationSeconds)
	if limit := time.Duration(*leader.Spec.LeaseDurationSeconds)*time.Second + 10*time.Second; handover > limit {
		t.Errorf("handover took %s, more than the lease duration and a retry", handover)
	}

	// The status the killed leader wrote says Ready: wait for the new
	// leader's.
	eventually(t, 2*time.Minute, "status.master moved off "+oldMaster, func() (bool, string) {
		cur = get(t, s, f)
		return cur.Status.Master != nil && cur.Status.Master.Member != oldMaster, fmt.Sprintf("master %+v", cur.Status.Master)
	})
	cur = waitReady(t, s, f, 4*time.Minute)
	if cur.Status.Failovers != failovers+1 {
		t.Errorf("status.failovers %d, want %d: the switch recorded exactly once", cur.Status.Failovers, failovers+1)
	}
	// A later pass does not count it again.
	time.Sleep(10 * time.Second)
	if got := get(t, s, f).Status.Failovers; got != failovers+1 {
		t.Errorf("status.failovers went on to %d, want %d", got, failovers+1)
	}
}

func probe(p *harness.Pod, path string) (bool, string) {
	resp, err := http.Get(p.Probes + path)
	if err != nil {
		return false, err.Error()
	}
	_ = resp.Body.Close()
	return resp.StatusCode == http.StatusOK, resp.Status
}

// newFormation creates a namespace opened to the operator, the password
// Secrets and a formation; deleted (with its containers) at cleanup.
func newFormation(t *testing.T, s *harness.Shipped, prefix string) *redisv1alpha1.RedisSentinelFormation {
	t.Helper()
	ctx := context.Background()
	name := fmt.Sprintf("%s-%04x", prefix, rand.IntN(0xffff))
	objs := []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}},
		&rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: controllers.FormationSecretsRole, Namespace: name},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: controllers.FormationSecretsRole},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: controllers.ServiceAccountName, Namespace: harness.OperatorNamespace}},
		},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "redis-pw", Namespace: name}, StringData: map[string]string{"password": "img-" + randomHex()}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "sentinel-pw", Namespace: name}, StringData: map[string]string{"password": "img-" + randomHex()}},
	}
	f := &redisv1alpha1.RedisSentinelFormation{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: name}}
	f.Spec.Auth.PasswordSecretRef = redisv1alpha1.SecretKeyReference{Name: "redis-pw", Key: "password"}
	f.Spec.Auth.SentinelPasswordSecretRef = redisv1alpha1.SecretKeyReference{Name: "sentinel-pw", Key: "password"}
	for _, o := range append(objs, f) {
		if err := s.K8s.Create(ctx, o); err != nil {
			t.Fatalf("creating %T %s: %v", o, o.GetName(), err)
		}
	}
	t.Cleanup(func() {
		ctx := context.Background()
		_ = s.K8s.Delete(ctx, f)
		// The finalizer deletes the containers; wait for it (the pods are
		// still running: cleanups run last-registered first).
		eventually(t, 2*time.Minute, "formation "+name+" deleted", func() (bool, string) {
			err := s.K8s.Get(ctx, client.ObjectKeyFromObject(f), &redisv1alpha1.RedisSentinelFormation{})
			return apierrors.IsNotFound(err), fmt.Sprint(err)
		})
	})
	return f
}

func waitReady(t *testing.T, s *harness.Shipped, f *redisv1alpha1.RedisSentinelFormation, timeout time.Duration) *redisv1alpha1.RedisSentinelFormation {
	t.Helper()
	var cur *redisv1alpha1.RedisSentinelFormation
	eventually(t, timeout, f.Name+" Ready", func() (bool, string) {
		cur = get(t, s, f)
		ready := cur.Status.Phase == redisv1alpha1.PhaseReady && cur.Status.ObservedGeneration == cur.Generation && cur.Status.Master != nil
		return ready, fmt.Sprintf("phase %s, conditions %v", cur.Status.Phase, cur.Status.Conditions)
	})
	return cur
}

func get(t *testing.T, s *harness.Shipped, f *redisv1alpha1.RedisSentinelFormation) *redisv1alpha1.RedisSentinelFormation {
	t.Helper()
	cur := &redisv1alpha1.RedisSentinelFormation{}
	if err := s.K8s.Get(context.Background(), client.ObjectKeyFromObject(f), cur); err != nil {
		t.Fatal(err)
	}
	return cur
}

func memberInstance(f *redisv1alpha1.RedisSentinelFormation, member string) string {
	for _, m := range f.Status.Members {
		if m.Name == member {
			return m.Instance
		}
	}
	return ""
}

func eventually(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	harness.Eventually(t, timeout, what, cond, nil)
}

func podName(suffix string) string { return "rsf-image-test-" + suffix }

func randomHex() string { return fmt.Sprintf("%016x", rand.Uint64()) }

// The test's own API clients log nothing worth reading.
func init() { ctrllog.SetLogger(logr.Discard()) }
