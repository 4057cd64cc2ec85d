package harness

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
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

// Shipped is the operator as `make deploy` installs it, on a real
// kube-apiserver, ready to run as pods (RunPod).
type Shipped struct {
	Cfg        *rest.Config
	K8s        client.Client
	Deployment *appsv1.Deployment
	// Image is the reference by digest the Deployment runs.
	Image string
	// Token is a token of the Deployment's ServiceAccount (TokenRequest).
	Token string
}

// Deploy starts a kube-apiserver, runs `make deploy` against it, reads back
// the Deployment it created and loads its image into podman.
func Deploy(t testing.TB) *Shipped {
	t.Helper()
	ctx := context.Background()
	root := testenv.RepoRoot()
	env, cfg, err := testenv.Start()
	testenv.Check(t, "kube-apiserver + etcd", err)
	t.Cleanup(func() { _ = env.Stop() })
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := WriteKubeconfig(cfg, kubeconfig); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("make", "--no-print-directory", "-C", root, "deploy")
	cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make deploy: %v\n%s", err, out)
	}
	// make deploy runs make image: the digest is read after it.
	ref, err := os.ReadFile(filepath.Join(root, "bin", "image", "digest"))
	if err != nil {
		t.Fatalf("make deploy wrote no bin/image/digest: %v", err)
	}
	image := strings.TrimSpace(string(ref))
	testenv.Check(t, "podman and the operator image", LoadImage(ctx, filepath.Join(root, "bin", "image", "oci"), strings.Split(image, "@")[0]+":under-test"))

	scheme := k8sruntime.NewScheme()
	for _, add := range []func(*k8sruntime.Scheme) error{clientgoscheme.AddToScheme, redisv1alpha1.AddToScheme} {
		if err := add(scheme); err != nil {
			t.Fatal(err)
		}
	}
	k8s, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	d := &appsv1.Deployment{}
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: OperatorNamespace, Name: DeploymentName}, d); err != nil {
		t.Fatalf("make deploy created no Deployment %s/%s: %v", OperatorNamespace, DeploymentName, err)
	}
	if got := d.Spec.Template.Spec.Containers[0].Image; got != image {
		t.Fatalf("the Deployment runs %q, want the image make image built, by digest: %q", got, image)
	}
	// As docs/deploy.md tells users: the group that owns the node's Incus
	// socket, so the non-root operator may use it.
	var st syscall.Stat_t
	if err := syscall.Stat(incusSocket, &st); err != nil {
		testenv.Check(t, "incusd", &testenv.UnavailableError{Err: err})
	}
	d.Spec.Template.Spec.SecurityContext.SupplementalGroups = []int64{int64(st.Gid)}
	if err := k8s.Update(ctx, d); err != nil {
		t.Fatal(err)
	}

	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	token, err := ServiceAccountToken(ctx, cs, OperatorNamespace, d.Spec.Template.Spec.ServiceAccountName, time.Hour)
	if err != nil {
		t.Fatalf("TokenRequest for the operator's ServiceAccount: %v", err)
	}
	return &Shipped{Cfg: cfg, K8s: k8s, Deployment: d, Image: image, Token: token}
}

// Run starts one replica of the Deployment's pod, removed at cleanup (its
// log printed first when the test failed).
func (s *Shipped) Run(t testing.TB, o PodOptions) *Pod {
	t.Helper()
	ctx := context.Background()
	o.Token = s.Token
	// The shipped ports, unless something on this machine holds them (the
	// lab's operator probes on 127.0.0.1:8081). The template names the
	// probe port in its probes (the flag keeps its default) and the
	// metrics port in its args.
	c := s.Deployment.Spec.Template.Spec.Containers[0]
	taken := func(addr string, set *int) {
		if *set == 0 && !free(addr) {
			*set = freePort(t)
			t.Logf("%s is taken on this machine; pod %s uses port %d", addr, o.Name, *set)
		}
	}
	if c.LivenessProbe != nil && c.LivenessProbe.HTTPGet != nil {
		taken(":"+c.LivenessProbe.HTTPGet.Port.String(), &o.ProbePort)
	}
	for _, a := range c.Args {
		if addr, ok := strings.CutPrefix(a, "--metrics-bind-address="); ok {
			taken(addr, &o.MetricsPort)
		}
	}
	p, err := RunPod(ctx, s.Deployment, s.Cfg, s.Image, o)
	if err != nil {
		t.Fatalf("running the operator's pod: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("%s's log (tail):\n%s", p.Name, tailLines(p.Logs(context.Background()), 40))
		}
		p.Remove(context.Background())
	})
	return p
}

// RunSecond starts another replica beside the first on this node: on free
// probe and metrics ports, as two host-network pods cannot share them.
func (s *Shipped) RunSecond(t testing.TB, name string) *Pod {
	t.Helper()
	return s.Run(t, PodOptions{Name: name, ProbePort: freePort(t), MetricsPort: freePort(t)})
}

func freePort(t testing.TB) int {
	t.Helper()
	port, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// free reports whether addr (":port", all addresses) can be listened on.
func free(addr string) bool {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return false
	}
	_ = l.Close()
	return true
}

// ServiceAccountClient is a client authenticated as the pod is: with the
// ServiceAccount's token.
func (s *Shipped) ServiceAccountClient(t testing.TB) client.Client {
	t.Helper()
	cfg := rest.AnonymousClientConfig(s.Cfg)
	cfg.BearerToken = s.Token
	c, err := client.New(cfg, client.Options{Scheme: s.K8s.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// WaitLeader waits until the leader lease is held by pod (any holder when
// nil), polling every 100 ms.
func (s *Shipped) WaitLeader(t testing.TB, timeout time.Duration, pod *Pod) *coordinationv1.Lease {
	t.Helper()
	lease := &coordinationv1.Lease{}
	who := "anyone"
	if pod != nil {
		who = pod.Name
	}
	Eventually(t, timeout, "the leader lease held by "+who, func() (bool, string) {
		if err := s.K8s.Get(context.Background(), client.ObjectKey{Namespace: OperatorNamespace, Name: LeaseName}, lease); err != nil {
			return false, err.Error()
		}
		held := ptr.Deref(lease.Spec.HolderIdentity, "") != "" && (pod == nil || pod.Leads(lease))
		return held, "holder " + ptr.Deref(lease.Spec.HolderIdentity, "none")
	}, nil)
	return lease
}

// Leads reports whether the pod holds the lease (its holder identity is the
// pod's hostname, then "_" and a UUID).
func (p *Pod) Leads(l *coordinationv1.Lease) bool {
	return strings.HasPrefix(ptr.Deref(l.Spec.HolderIdentity, ""), p.Name+"_")
}

func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
