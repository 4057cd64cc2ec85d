// Package image_test runs the operator's shipped image as a cluster runs
// it: `make deploy` applies the manifests to a real Kubernetes of two nodes
// on this machine (harness.KubeCluster: kube-apiserver, the controller
// manager, the scheduler, a kubelet and containerd per node), whose
// kubelets run the Deployment's pods: image by digest, probes, projected
// ServiceAccount token, host network, the Incus socket.
package image_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	redisv1alpha1 "github.com/incusops/redis-sentinel-operator/api/v1alpha1"
	"github.com/incusops/redis-sentinel-operator/controllers"
	"github.com/incusops/redis-sentinel-operator/internal/incus"
	"github.com/incusops/redis-sentinel-operator/internal/testenv"
	"github.com/incusops/redis-sentinel-operator/test/harness"
)

// TestShippedImage deploys once, then checks the single replica (probes,
// lease, RBAC, a formation Ready) and the leader handover of two.
func TestShippedImage(t *testing.T) {
	s := harness.Deploy(t)
	t.Run("OneReplica", func(t *testing.T) { oneReplica(t, s) })
	if t.Failed() {
		return
	}
	t.Run("LeaderHandover", func(t *testing.T) { leaderHandover(t, s) })
}

// oneReplica: the kubelet finds the pod Ready by its probes, the pod takes
// the leader lease and brings the sample formation to Ready, its ServiceAccount is
// refused what the shipped RBAC does not grant, and a rollout completes
// with a single schedulable node.
func oneReplica(t *testing.T, s *harness.Shipped) {
	ctx := context.Background()
	pods := s.WaitAvailable(t, 1)
	pod := pods[0]
	if !projectsToken(&pod) {
		t.Errorf("pod %s has no projected ServiceAccount token volume: %+v", pod.Name, pod.Spec.Volumes)
	}
	s.WaitLeader(t, time.Minute, "")
	if leader := s.LeaderPod(t); leader.Name != pod.Name {
		t.Errorf("the lease was taken by %s, want %s", leader.Name, pod.Name)
	}

	// The ServiceAccount, through a token of its own, as the pod uses it.
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

	f := applySample(t, s)
	start := time.Now()
	cur := waitReady(t, s, f, 4*time.Minute)
	t.Logf("formation %s Ready %.1f s after it was applied, master %s", f.Name, time.Since(start).Seconds(), cur.Status.Master.Member)
	after := s.WaitAvailable(t, 1)
	if after[0].Name != pod.Name || after[0].Status.ContainerStatuses[0].RestartCount != 0 {
		t.Errorf("the pod was replaced or restarted: %s restarts %d", after[0].Name, after[0].Status.ContainerStatuses[0].RestartCount)
	}

	// A rollout with one schedulable node, the pod's: the new pod needs the
	// old one's host ports, so it can only start once the old one is gone.
	for _, n := range s.Cluster.Nodes {
		if n.Name != pod.Spec.NodeName {
			setUnschedulable(t, s, n.Name, true)
			defer setUnschedulable(t, s, n.Name, false)
		}
	}
	restart := fmt.Sprintf(`{"spec":{"template":{"metadata":{"annotations":{"kubectl.kubernetes.io/restartedAt":%q}}}}}`, time.Now().Format(time.RFC3339))
	if err := s.K8s.Patch(ctx, s.Deployment, client.RawPatch(types.StrategicMergePatchType, []byte(restart))); err != nil {
		t.Fatal(err)
	}
	rolled := s.WaitAvailable(t, 1)
	if rolled[0].Name == pod.Name || rolled[0].Spec.NodeName != pod.Spec.NodeName {
		t.Errorf("after a rollout on one node: pod %s on %s, want a new pod on %s", rolled[0].Name, rolled[0].Spec.NodeName, pod.Spec.NodeName)
	}
	waitReady(t, s, f, 2*time.Minute)
}

func setUnschedulable(t *testing.T, s *harness.Shipped, node string, unschedulable bool) {
	t.Helper()
	patch := fmt.Sprintf(`{"spec":{"unschedulable":%t}}`, unschedulable)
	if err := s.K8s.Patch(context.Background(), &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: node}}, client.RawPatch(types.MergePatchType, []byte(patch))); err != nil {
		t.Fatal(err)
	}
}

// leaderHandover: two replicas, on the two nodes; the leader's manager is
// SIGKILLed together with the formation's master. A manager (the standby,
// or the killed one restarted by its kubelet) takes the lease once it has
// expired, and records Sentinel's failover in status exactly once.
func leaderHandover(t *testing.T, s *harness.Shipped) {
	ctx := context.Background()
	s.Scale(t, 2)
	pods := s.WaitAvailable(t, 2)
	if pods[0].Spec.NodeName == pods[1].Spec.NodeName {
		t.Fatalf("both replicas on %s: two host-network pods cannot share a node's ports", pods[0].Spec.NodeName)
	}
	// Created after both replicas run, so deleted before the Deployment
	// shrinks (cleanups run last-registered first).
	f := applySample(t, s)
	cur := waitReady(t, s, f, 4*time.Minute)
	leader := s.LeaderPod(t)
	lease := s.Lease(t)
	holder := ptr.Deref(lease.Spec.HolderIdentity, "")

	failovers := cur.Status.Failovers
	oldMaster := cur.Status.Master.Member
	killed := time.Now()
	s.KillManager(t, leader)
	incusSrv, err := incus.Connect(ctx, incus.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := incusSrv.StopInstance(ctx, memberInstance(cur, oldMaster), true); err != nil {
		t.Fatal(err)
	}
	next := s.WaitLeader(t, time.Minute, holder)
	handover := time.Since(killed)
	t.Logf("leader %s SIGKILLed with the master's container; lease taken by %s (pod %s) %.1f s later (lease duration %d s)",
		leader.Name, *next.Spec.HolderIdentity, s.LeaderPod(t).Name, handover.Seconds(), *lease.Spec.LeaseDurationSeconds)
	if limit := time.Duration(*lease.Spec.LeaseDurationSeconds)*time.Second + 10*time.Second; handover > limit {
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

// projectsToken: the pod got the ServiceAccount admission's projected
// token volume (what the operator authenticates with in-cluster).
func projectsToken(p *corev1.Pod) bool {
	for _, v := range p.Spec.Volumes {
		if v.Projected == nil {
			continue
		}
		for _, src := range v.Projected.Sources {
			if src.ServiceAccountToken != nil && strings.HasPrefix(v.Name, "kube-api-access-") {
				return true
			}
		}
	}
	return false
}

// applySample follows docs/deploy.md with kubectl: a namespace, the
// RoleBinding that opens its Secrets to the operator, then the sample
// formation and its Secrets (config/samples) applied into it.
func applySample(t *testing.T, s *harness.Shipped) *redisv1alpha1.RedisSentinelFormation {
	t.Helper()
	ns := fmt.Sprintf("sample-%04x", rand.IntN(0xffff))
	s.Cluster.Kubectl(t, "create", "namespace", ns)
	s.Cluster.Kubectl(t, "-n", ns, "create", "rolebinding", controllers.FormationSecretsRole, "--clusterrole="+controllers.FormationSecretsRole,
		"--serviceaccount="+harness.OperatorNamespace+":"+controllers.ServiceAccountName)
	s.Cluster.Kubectl(t, "-n", ns, "apply", "-f", filepath.Join(testenv.RepoRoot(), "config", "samples", "redis_v1alpha1_redissentinelformation.yaml"))
	list := &redisv1alpha1.RedisSentinelFormationList{}
	if err := s.K8s.List(context.Background(), list, client.InNamespace(ns)); err != nil || len(list.Items) != 1 {
		t.Fatalf("the sample applied %d formations (%v), want 1", len(list.Items), err)
	}
	f := &list.Items[0]
	deleteAtCleanup(t, s, f)
	return f
}

// deleteAtCleanup deletes the formation when the test ends and waits for
// its finalizer, which deletes the containers (the operator's pods are
// still running: cleanups run last-registered first).
func deleteAtCleanup(t *testing.T, s *harness.Shipped, f *redisv1alpha1.RedisSentinelFormation) {
	t.Cleanup(func() {
		ctx := context.Background()
		_ = s.K8s.Delete(ctx, f)
		eventually(t, 2*time.Minute, "formation "+f.Namespace+"/"+f.Name+" deleted", func() (bool, string) {
			err := s.K8s.Get(ctx, client.ObjectKeyFromObject(f), &redisv1alpha1.RedisSentinelFormation{})
			return apierrors.IsNotFound(err), fmt.Sprint(err)
		})
	})
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

// The test's own API clients log nothing worth reading.
func init() { ctrllog.SetLogger(logr.Discard()) }
