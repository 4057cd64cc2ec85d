package harness

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	redisv1alpha1 "github.com/incusops/redis-sentinel-operator/api/v1alpha1"
	"github.com/incusops/redis-sentinel-operator/internal/testenv"
)

// The shipped Deployment's names (config/).
const (
	OperatorNamespace = "rsf-system"
	DeploymentName    = "rsf-controller-manager"
	LeaseName         = "redis-sentinel-operator.redis.incusops.io"
	incusSocket       = "/var/lib/incus/unix.socket"
)

// Shipped is the operator as `make deploy` installs it, in a KubeCluster:
// the Deployment's pods are scheduled and run by the nodes' kubelets.
type Shipped struct {
	Cluster    *KubeCluster
	K8s        client.Client
	Deployment *appsv1.Deployment
	// Image is the reference by digest the Deployment runs.
	Image string
}

// Deploy builds the image with `make image`, starts a cluster of two
// nodes, imports the image into their containerd (no registry is
// reachable: a node finds it there, by digest), runs `make deploy` against the cluster, sets the
// Deployment's supplementalGroups to the group of this machine's Incus
// socket (as docs/deploy.md tells users), and waits for its pod to be
// available.
func Deploy(t testing.TB) *Shipped {
	t.Helper()
	ctx := context.Background()
	root := testenv.RepoRoot()
	var st syscall.Stat_t
	if err := syscall.Stat(incusSocket, &st); err != nil {
		testenv.Unavailable(t, "incusd", err)
	}
	// The image first: it needs no cluster, so on a machine where make
	// test is still building the node binaries it is built meanwhile,
	// not after StartKubeCluster waited for them.
	if err := run("make", "--no-print-directory", "-C", root, "image"); err != nil {
		t.Fatal(err)
	}
	c := StartKubeCluster(t, 2)
	ref, err := os.ReadFile(filepath.Join(root, "bin", "image", "digest"))
	if err != nil {
		t.Fatalf("make image wrote no bin/image/digest: %v", err)
	}
	image := strings.TrimSpace(string(ref))
	for _, n := range c.Nodes {
		if err := n.ImportImage(ctx, filepath.Join(root, "bin", "image", "oci")); err != nil {
			t.Fatal(err)
		}
	}
	c.Make(t, "deploy")

	scheme := k8sruntime.NewScheme()
	for _, add := range []func(*k8sruntime.Scheme) error{clientgoscheme.AddToScheme, redisv1alpha1.AddToScheme} {
		if err := add(scheme); err != nil {
			t.Fatal(err)
		}
	}
	k8s, err := client.New(c.Cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	s := &Shipped{Cluster: c, K8s: k8s, Image: image}
	d := s.getDeployment(t)
	if got := d.Spec.Template.Spec.Containers[0].Image; got != image {
		t.Fatalf("the Deployment runs %q, want the image make image built, by digest: %q", got, image)
	}
	patch := fmt.Sprintf(`{"spec":{"template":{"spec":{"securityContext":{"supplementalGroups":[%d]}}}}}`, st.Gid)
	if err := k8s.Patch(ctx, d, client.RawPatch(types.StrategicMergePatchType, []byte(patch))); err != nil {
		t.Fatal(err)
	}
	s.WaitAvailable(t, 1)
	t.Cleanup(func() {
		if t.Failed() {
			for _, p := range s.pods(t) {
				t.Logf("%s on %s, log tail:\n%s", p.Name, p.Spec.NodeName, tailLines(c.ContainerLog(&p, "manager"), 30))
			}
		}
	})
	return s
}

// Make runs a make target of the repository against the cluster.
func (c *KubeCluster) Make(t testing.TB, target string) {
	t.Helper()
	c.asAdmin(t, "make", "--no-print-directory", "-C", testenv.RepoRoot(), target)
}

// Kubectl runs kubectl against the cluster and returns its output.
func (c *KubeCluster) Kubectl(t testing.TB, args ...string) string {
	t.Helper()
	return c.asAdmin(t, "kubectl", args...)
}

// asAdmin runs a command with the cluster's admin kubeconfig as
// KUBECONFIG and returns its output.
func (c *KubeCluster) asAdmin(t testing.TB, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+c.kubeconfig)
	out, err := output(cmd)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func (s *Shipped) getDeployment(t testing.TB) *appsv1.Deployment {
	t.Helper()
	d := &appsv1.Deployment{}
	if err := s.K8s.Get(context.Background(), client.ObjectKey{Namespace: OperatorNamespace, Name: DeploymentName}, d); err != nil {
		t.Fatalf("make deploy created no Deployment %s/%s: %v", OperatorNamespace, DeploymentName, err)
	}
	s.Deployment = d
	return d
}

// Scale sets the Deployment's replicas.
func (s *Shipped) Scale(t testing.TB, replicas int32) {
	t.Helper()
	patch := fmt.Sprintf(`{"spec":{"replicas":%d}}`, replicas)
	if err := s.K8s.Patch(context.Background(), s.getDeployment(t), client.RawPatch(types.MergePatchType, []byte(patch))); err != nil {
		t.Fatal(err)
	}
}

// WaitAvailable waits until the Deployment's rollout is complete with
// replicas pods Ready (the kubelets' readiness probes) and no others, and
// returns them.
func (s *Shipped) WaitAvailable(t testing.TB, replicas int32) []corev1.Pod {
	t.Helper()
	var pods []corev1.Pod
	Eventually(t, 3*time.Minute, fmt.Sprintf("the Deployment's rollout, %d pods Ready", replicas), func() (bool, string) {
		d := s.getDeployment(t)
		st := d.Status
		pods = s.pods(t)
		ready := 0
		for _, p := range pods {
			if podReady(&p) {
				ready++
			}
		}
		done := st.ObservedGeneration >= d.Generation && st.UpdatedReplicas == replicas && st.AvailableReplicas == replicas &&
			st.Replicas == replicas && len(pods) == int(replicas) && ready == int(replicas)
		return done, fmt.Sprintf("status %+v, %d pods, %d Ready", st, len(pods), ready)
	}, nil)
	return pods
}

// pods are the Deployment's pods that are not being deleted.
func (s *Shipped) pods(t testing.TB) []corev1.Pod {
	t.Helper()
	list := &corev1.PodList{}
	if err := s.K8s.List(context.Background(), list, client.InNamespace(OperatorNamespace),
		client.MatchingLabels(s.Deployment.Spec.Selector.MatchLabels)); err != nil {
		t.Fatal(err)
	}
	var pods []corev1.Pod
	for _, p := range list.Items {
		if p.DeletionTimestamp == nil {
			pods = append(pods, p)
		}
	}
	return pods
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// Lease is the operator's leader lease.
func (s *Shipped) Lease(t testing.TB) *coordinationv1.Lease {
	t.Helper()
	lease := &coordinationv1.Lease{}
	if err := s.K8s.Get(context.Background(), client.ObjectKey{Namespace: OperatorNamespace, Name: LeaseName}, lease); err != nil {
		t.Fatalf("the leader lease: %v", err)
	}
	return lease
}

// WaitLeader waits until the leader lease is held by someone other than
// notHolder (anyone when empty), polling every 100 ms, and returns it.
func (s *Shipped) WaitLeader(t testing.TB, timeout time.Duration, notHolder string) *coordinationv1.Lease {
	t.Helper()
	lease := &coordinationv1.Lease{}
	Eventually(t, timeout, "the leader lease held by a new holder", func() (bool, string) {
		if err := s.K8s.Get(context.Background(), client.ObjectKey{Namespace: OperatorNamespace, Name: LeaseName}, lease); err != nil {
			return false, err.Error()
		}
		holder := ptr.Deref(lease.Spec.HolderIdentity, "")
		return holder != "" && holder != notHolder, "holder " + holder
	}, nil)
	return lease
}

// LeaderPod is the pod whose manager holds the lease: a host-network pod's
// lease identity is the node machine's hostname, the same for every node
// here, so the pod is the one whose running container logged taking it
// (a manager that loses the lease exits).
func (s *Shipped) LeaderPod(t testing.TB) *corev1.Pod {
	t.Helper()
	var leader *corev1.Pod
	Eventually(t, time.Minute, "the pod that took the lease", func() (bool, string) {
		var leaders []string
		for _, p := range s.pods(t) {
			if strings.Contains(s.Cluster.ContainerLog(&p, "manager"), "Successfully acquired lease") {
				leader = &p
				leaders = append(leaders, p.Name)
			}
		}
		return len(leaders) == 1, fmt.Sprintf("leaders by their logs: %v", leaders)
	}, nil)
	return leader
}

// KillManager SIGKILLs the manager container of pod, as a crash would (the
// kubelet restarts it).
func (s *Shipped) KillManager(t testing.TB, pod *corev1.Pod) {
	t.Helper()
	n := s.Cluster.Node(pod.Spec.NodeName)
	if n == nil || len(pod.Status.ContainerStatuses) == 0 {
		t.Fatalf("pod %s: no node or container to kill", pod.Name)
	}
	if err := n.KillContainer(context.Background(), pod.Status.ContainerStatuses[0].ContainerID); err != nil {
		t.Fatal(err)
	}
}

// ServiceAccountClient is a client authenticated as the pods are: with a
// token of their ServiceAccount (TokenRequest).
func (s *Shipped) ServiceAccountClient(t testing.TB) client.Client {
	t.Helper()
	tr, err := s.Cluster.clientset(t).CoreV1().ServiceAccounts(OperatorNamespace).CreateToken(context.Background(), s.Deployment.Spec.Template.Spec.ServiceAccountName,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To(int64(3600))}}, metav1.CreateOptions{})
	if err == nil && tr.Status.Token == "" {
		err = errors.New("TokenRequest returned no token")
	}
	if err != nil {
		t.Fatalf("a token of the operator's ServiceAccount: %v", err)
	}
	cfg := rest.AnonymousClientConfig(s.Cluster.Cfg)
	cfg.BearerToken = tr.Status.Token
	c, err := client.New(cfg, client.Options{Scheme: s.K8s.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func freePort(t testing.TB) int {
	t.Helper()
	port, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return port
}

func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
