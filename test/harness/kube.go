package harness

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/incusops/redis-sentinel-operator/internal/testenv"
)

// The kube network: a bridge of the run's own, no NAT. kube-apiserver
// listens on the bridge's address, port 443; each node (its containerd, its
// kubelet and its host-network pods) has a network namespace of its own on
// the bridge, so two host-network pods of one Deployment bind the same
// ports on two nodes as they do in a cluster.
const (
	kubeBridge = "rsfkbr0"
	kubeNetns  = "rsfk-" // + node name
	kubeVeth   = "rsfkv" // + node index
	// APIServerIP is the bridge's address and the first of the service
	// range: the kubernetes Service, which a pod finds in
	// KUBERNETES_SERVICE_HOST/PORT, is then kube-apiserver itself, and no
	// kube-proxy is needed.
	APIServerIP  = "10.76.0.1"
	serviceRange = "10.76.0.0/28"
	// node i is 10.76.0.(101+i): outside the service range.
	nodeIPBase = 101
	// kubeCgroup prefixes each node's cgroup root (the kubelet's
	// cgroupRoot) in every hierarchy.
	kubeCgroup = "rsf-kube-"
	// PauseImage is the nodes' sandbox image, built here (hack/pause).
	PauseImage = "localhost/rsf-pause:1"
)

// kubeletTunables are the kernel settings the kubelet sets at start
// (protectKernelDefaults: false); the cluster puts the machine's values back.
var kubeletTunables = []string{"vm/overcommit_memory", "vm/panic_on_oom", "kernel/panic", "kernel/panic_on_oops", "kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes"}

// KubeCluster is a real Kubernetes on this machine: kube-apiserver + etcd
// (envtest), kube-controller-manager (the controllers a Deployment needs),
// kube-scheduler, and nodes, each a kubelet with a containerd of its own.
// Everything it changes is undone at cleanup, and by the next start if a
// run was killed: its processes, mounts and cgroups, its network
// namespaces and bridge, and the kernel settings the kubelet sets.
type KubeCluster struct {
	// Cfg is a cluster-admin client configuration.
	Cfg        *rest.Config
	Nodes      []*KubeNode
	dir        string
	kubeconfig string
}

// KubeNode is one node: its name, address and containerd.
type KubeNode struct {
	Name string
	IP   string
	dir  string
}

// containerdSocket is the node's containerd endpoint.
func (n *KubeNode) containerdSocket() string { return filepath.Join(n.dir, "containerd.sock") }

// PodLogsDir is where the node's kubelet writes its containers' logs.
func (n *KubeNode) PodLogsDir() string { return filepath.Join(n.dir, "pod-logs") }

// kubeDir holds the cluster's state; fixed, so that a start cleans up after
// a run that was killed.
func kubeDir() string { return filepath.Join(testenv.RepoRoot(), "bin", "kube") }

// StartKubeCluster brings up the control plane and nodes (named node-a,
// node-b, ...) and waits until every node is Ready. It needs root, the
// binaries of hack/envtest-bins.sh kubelet kube-scheduler
// kube-controller-manager (waited for, or built, through it), and
// containerd, runc and the CNI plugins from Debian (make test-deps);
// without them the test is failed under CI and skipped elsewhere.
func StartKubeCluster(t testing.TB, nodes int) *KubeCluster {
	t.Helper()
	assets, err := kubeAssets(t)
	if err == nil {
		err = kubeNeeds()
	}
	if err != nil {
		testenv.Unavailable(t, "a Kubernetes node (kubelet, containerd)", err)
	}
	dir := kubeDir()
	tearDownKube(dir, false)
	if err := os.MkdirAll(filepath.Join(dir, "logs"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := saveTunables(dir); err != nil {
		t.Fatal(err)
	}
	c := &KubeCluster{dir: dir, kubeconfig: filepath.Join(dir, "admin.kubeconfig")}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("the cluster's logs: %s (kept until the next start)", filepath.Join(dir, "logs"))
		}
		tearDownKube(dir, t.Failed())
	})

	if err := run("ip", "link", "add", kubeBridge, "type", "bridge"); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"addr", "add", APIServerIP + "/24", "dev", kubeBridge}, {"link", "set", kubeBridge, "up"}} {
		if err := run("ip", args...); err != nil {
			t.Fatal(err)
		}
	}

	env, cfg, err := testenv.Start(func(env *envtest.Environment) {
		env.BinaryAssetsDirectory = assets
		api := env.ControlPlane.GetAPIServer()
		api.SecureServing.Address, api.SecureServing.Port = APIServerIP, "443"
		api.Configure().
			Set("service-cluster-ip-range", serviceRange).
			// Logs and exec reach a kubelet at its node's address, not
			// through a DNS lookup of the node's name.
			Set("kubelet-preferred-address-types", "InternalIP").
			// envtest turns the ServiceAccount admission plugin off; a
			// cluster has it: it gives pods their projected token.
			Disable("disable-admission-plugins")
	})
	testenv.Check(t, "kube-apiserver + etcd", err)
	c.Cfg = cfg
	t.Cleanup(func() { _ = env.Stop() })
	if err := WriteKubeconfig(cfg, c.kubeconfig); err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(caFile, cfg.CAData, 0o644); err != nil {
		t.Fatal(err)
	}
	// The control plane's components use the admin identity: the API
	// server of envtest authorizes with RBAC only (no Node authorizer).
	kc := c.kubeconfig
	c.startDaemon(t, "kube-controller-manager", "", filepath.Join(assets, "kube-controller-manager"),
		"--kubeconfig="+kc,
		"--controllers=deployment-controller,replicaset-controller,root-ca-certificate-publisher-controller,garbage-collector-controller,node-lifecycle-controller",
		"--root-ca-file="+caFile, "--leader-elect=false", "--use-service-account-credentials=false",
		"--bind-address=127.0.0.1", "--secure-port="+strconv.Itoa(freePort(t)))
	c.startDaemon(t, "kube-scheduler", "", filepath.Join(assets, "kube-scheduler"),
		"--kubeconfig="+kc,
		"--leader-elect=false", "--bind-address=127.0.0.1", "--secure-port="+strconv.Itoa(freePort(t)))

	pause := c.buildPause(t)
	for i := range nodes {
		c.Nodes = append(c.Nodes, c.startNode(t, i, assets, pause))
	}
	cs := c.clientset(t)
	Eventually(t, 3*time.Minute, "every node Ready", func() (bool, string) {
		list, err := cs.CoreV1().Nodes().List(context.Background(), metav1.ListOptions{})
		if err != nil {
			return false, err.Error()
		}
		ready := 0
		var states []string
		for _, n := range list.Items {
			for _, cond := range n.Status.Conditions {
				if cond.Type == corev1.NodeReady {
					states = append(states, n.Name+" "+string(cond.Status)+" "+cond.Message)
					if cond.Status == corev1.ConditionTrue {
						ready++
					}
				}
			}
		}
		return ready == nodes, strings.Join(states, "; ")
	}, nil)
	return c
}

// nodeCommands are the cluster's binaries beside kube-apiserver.
var nodeCommands = []string{"kubelet", "kube-scheduler", "kube-controller-manager"}

// kubeAssets is the folder with kube-apiserver, etcd and nodeCommands:
// testenv.AssetsDir when they are all there, else the one
// hack/envtest-bins.sh prints once it has them. make test builds them
// beside the suites, so here the script waits for that build (or, when
// nothing builds them, builds them: about 16 CPU-minutes cold).
func kubeAssets(t testing.TB) (string, error) {
	if dir, err := testenv.AssetsDir(); err == nil && missingCommands(dir) == nil {
		return dir, nil
	}
	t.Logf("waiting for hack/envtest-bins.sh to have %s (make test builds them beside the suites)", strings.Join(nodeCommands, ", "))
	cmd := exec.Command(filepath.Join(testenv.RepoRoot(), "hack", "envtest-bins.sh"), nodeCommands...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("hack/envtest-bins.sh %s: %w: %s", strings.Join(nodeCommands, " "), err, bytes.TrimSpace(stderr.Bytes()))
	}
	dir := strings.TrimSpace(string(out))
	return dir, missingCommands(dir)
}

// missingCommands names the first of nodeCommands that dir lacks.
func missingCommands(dir string) error {
	for _, bin := range nodeCommands {
		if _, err := os.Stat(filepath.Join(dir, bin)); err != nil {
			return fmt.Errorf("%s missing in %s: %w", bin, dir, err)
		}
	}
	return nil
}

// kubeNeeds says what of the nodes' Debian packages or privileges is
// missing.
func kubeNeeds() error {
	for _, bin := range []string{"containerd", "containerd-shim-runc-v2", "ctr", "runc", "nsenter", "ip"} {
		if _, err := exec.LookPath(bin); err != nil {
			return fmt.Errorf("%s (make test-deps installs containerd, runc): %w", bin, err)
		}
	}
	if _, err := os.Stat("/usr/lib/cni/loopback"); err != nil {
		return fmt.Errorf("the CNI plugins (make test-deps installs containernetworking-plugins): %w", err)
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("a kubelet needs root")
	}
	return nil
}

// buildPause builds the sandbox image (hack/pause, packed by hack/image).
func (c *KubeCluster) buildPause(t testing.TB) string {
	t.Helper()
	root := testenv.RepoRoot()
	out := filepath.Join(c.dir, "pause")
	bin := filepath.Join(out, "pause")
	build := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", bin, "./hack/pause")
	build.Dir, build.Env = root, append(os.Environ(), "CGO_ENABLED=0")
	if _, err := output(build); err != nil {
		t.Fatalf("building hack/pause: %v", err)
	}
	repo, version, _ := strings.Cut(PauseImage, ":")
	pack := exec.Command("go", "run", "./hack/image", "-binary", bin, "-command", "pause", "-title", "rsf-pause",
		"-description", "the test nodes' pod sandbox: waits for SIGTERM",
		"-layout", filepath.Join(out, "oci"), "-archive", filepath.Join(out, "pause.tar"), "-digest-file", filepath.Join(out, "digest"),
		"-repo", repo, "-version", version)
	pack.Dir = root
	if _, err := output(pack); err != nil {
		t.Fatalf("packing the pause image: %v", err)
	}
	return filepath.Join(out, "oci")
}

// startNode starts node i: its network namespace on the bridge, its
// containerd (the pause image imported) and its kubelet, both in that
// namespace.
func (c *KubeCluster) startNode(t testing.TB, i int, assets, pauseLayout string) *KubeNode {
	t.Helper()
	n := &KubeNode{Name: "node-" + string(rune('a'+i)), IP: fmt.Sprintf("10.76.0.%d", nodeIPBase+i)}
	n.dir = filepath.Join(c.dir, n.Name)
	netns, veth := kubeNetns+n.Name, kubeVeth+strconv.Itoa(i)
	for _, args := range [][]string{
		{"netns", "add", netns},
		{"link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", netns},
		{"link", "set", veth, "master", kubeBridge},
		{"link", "set", veth, "up"},
		{"-n", netns, "link", "set", "lo", "up"},
		{"-n", netns, "addr", "add", n.IP + "/24", "dev", "eth0"},
		{"-n", netns, "link", "set", "eth0", "up"},
		// The lab's Incus bridge (the members) is reached through the
		// machine, which routes; nothing is NATed.
		{"-n", netns, "route", "add", "default", "via", APIServerIP},
	} {
		if err := run("ip", args...); err != nil {
			t.Fatal(err)
		}
	}
	cgroupRoot := kubeCgroup + n.Name
	if err := makeCgroup(cgroupRoot); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"cni", "pod-logs", "kubelet"} {
		if err := os.MkdirAll(filepath.Join(n.dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	files := map[string]string{
		"containerd.toml": fmt.Sprintf(containerdConfig, n.dir, n.containerdSocket(), PauseImage),
		// Host-network pods use no CNI network; the runtime reports
		// network ready once it has a configuration.
		"cni/10-loopback.conflist": `{"cniVersion": "1.0.0", "name": "rsf-kube", "plugins": [{"type": "loopback"}]}`,
		"kubelet.yaml":             fmt.Sprintf(kubeletConfig, cgroupRoot, n.containerdSocket(), n.IP, n.PodLogsDir(), filepath.Join(n.dir, "volume-plugins")),
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(n.dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	c.startDaemon(t, n.Name+"-containerd", netns, "containerd", "--config", filepath.Join(n.dir, "containerd.toml"))
	Eventually(t, 30*time.Second, n.Name+"'s containerd", func() (bool, string) {
		out, err := n.ctr(context.Background(), "version")
		return err == nil, out
	}, nil)
	if err := n.ImportImage(context.Background(), pauseLayout); err != nil {
		t.Fatal(err)
	}
	c.startDaemon(t, n.Name+"-kubelet", netns, filepath.Join(assets, "kubelet"),
		"--config="+filepath.Join(n.dir, "kubelet.yaml"), "--kubeconfig="+c.kubeconfig,
		"--hostname-override="+n.Name, "--node-ip="+n.IP, "--root-dir="+filepath.Join(n.dir, "kubelet"), "--cert-dir="+filepath.Join(n.dir, "pki"))
	return n
}

// containerdConfig: %[1]s the node's folder, %[2]s its socket, %[3]s the
// sandbox image. restrict_oom_score_adj: the kubelet asks for -998 for
// sandboxes, which needs CAP_SYS_RESOURCE this machine's root lacks.
const containerdConfig = `version = 2
# opt installs into /opt/containerd; nothing here uses it.
disabled_plugins = ["io.containerd.internal.v1.opt"]
root = "%[1]s/containerd/root"
state = "%[1]s/containerd/state"
[grpc]
  address = "%[2]s"
[ttrpc]
  address = "%[2]s.ttrpc"
[metrics]
  address = ""
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "%[3]s"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "%[1]s/containerd/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "%[1]s/cni"
`

// kubeletConfig: %[1]s the cgroup root, %[2]s containerd's socket, %[3]s
// the node's address, %[4]s the pod log folder, %[5]s the volume plugin
// folder. failCgroupV1: these machines have cgroup v1 (hybrid);
// containerd 1.6 does not report its cgroup driver, so it is set here.
const kubeletConfig = `apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: /%[1]s
failSwapOn: false
containerRuntimeEndpoint: unix://%[2]s
address: %[3]s
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
podLogsDir: %[4]s
volumePluginDir: %[5]s
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
authorization:
  mode: Webhook
imageGCHighThresholdPercent: 100
evictionHard:
  memory.available: "100Mi"
  nodefs.available: "1%%"
  imagefs.available: "1%%"
`

// ctr runs containerd's client against the node's containerd, in the
// namespace the CRI uses.
func (n *KubeNode) ctr(ctx context.Context, args ...string) (string, error) {
	return output(exec.CommandContext(ctx, "ctr", append([]string{"--address", n.containerdSocket(), "--namespace", "k8s.io"}, args...)...))
}

// ImportImage imports an OCI layout into the node's containerd, keeping
// its digest, under the name its index gives and as repository@digest: the
// CRI finds an image a pod names by digest only under that name (a pull
// records both; an import only the first).
func (n *KubeNode) ImportImage(ctx context.Context, layoutDir string) error {
	ii, err := layout.ImageIndexFromPath(layoutDir)
	if err != nil {
		return err
	}
	index, err := ii.IndexManifest()
	if err != nil {
		return fmt.Errorf("%s: %w", layoutDir, err)
	}
	archive := filepath.Join(n.dir, "import.tar")
	if _, err := output(exec.CommandContext(ctx, "tar", "-C", layoutDir, "-cf", archive, ".")); err != nil {
		return err
	}
	defer os.Remove(archive)
	if _, err := n.ctr(ctx, "images", "import", archive); err != nil {
		return err
	}
	for _, m := range index.Manifests {
		tag, err := name.NewTag(m.Annotations["org.opencontainers.image.ref.name"])
		if err != nil {
			return fmt.Errorf("%s: the image's name: %w", layoutDir, err)
		}
		if _, err := n.ctr(ctx, "images", "tag", "--force", tag.String(), tag.Context().Digest(m.Digest.String()).String()); err != nil {
			return err
		}
	}
	return nil
}

// KillContainer sends SIGKILL to a container of a pod on the node (its
// status's containerID), as a crash would.
func (n *KubeNode) KillContainer(ctx context.Context, containerID string) error {
	_, id, _ := strings.Cut(containerID, "://")
	_, err := n.ctr(ctx, "tasks", "kill", "--signal", "SIGKILL", id)
	return err
}

// Node is the node called name.
func (c *KubeCluster) Node(name string) *KubeNode {
	for _, n := range c.Nodes {
		if n.Name == name {
			return n
		}
	}
	return nil
}

// clientset is a cluster-admin clientset.
func (c *KubeCluster) clientset(t testing.TB) kubernetes.Interface {
	t.Helper()
	cs, err := kubernetes.NewForConfig(c.Cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// ContainerLog is the current log of a pod's container (the file of its
// latest restart), as the node's kubelet wrote it.
func (c *KubeCluster) ContainerLog(pod *corev1.Pod, container string) string {
	n := c.Node(pod.Spec.NodeName)
	if n == nil {
		return ""
	}
	restarts := 0
	for _, s := range pod.Status.ContainerStatuses {
		if s.Name == container {
			restarts = int(s.RestartCount)
		}
	}
	b, _ := os.ReadFile(filepath.Join(n.PodLogsDir(), pod.Namespace+"_"+pod.Name+"_"+string(pod.UID), container, strconv.Itoa(restarts)+".log"))
	return string(b)
}

// startDaemon starts a long-running process of the cluster (in the network
// namespace netns unless empty), its output in logs/<name>.log; it is
// stopped by the cluster's teardown, which finds it by its command line.
func (c *KubeCluster) startDaemon(t testing.TB, name, netns, bin string, args ...string) {
	t.Helper()
	if netns != "" {
		// nsenter enters the network namespace only: the kubelet's
		// mounts stay visible to containerd (ip netns exec would give
		// each its own mount namespace).
		args = append([]string{"--net=/run/netns/" + netns, bin}, args...)
		bin = "nsenter"
	}
	log, err := os.Create(filepath.Join(c.dir, "logs", name+".log"))
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	go func() { _ = cmd.Wait() }()
}

// tearDownKube undoes what a cluster in dir changed on the machine, in an
// order that lets each step succeed: processes (the kubelets first, so that
// nothing restarts a container), mounts, cgroups, network namespaces and
// bridge, kernel settings, then the folder (but its logs when keepLogs).
func tearDownKube(dir string, keepLogs bool) {
	killMatching(func(cmdline string) bool {
		return strings.Contains(cmdline, "kubelet") && strings.Contains(cmdline, dir)
	})
	killMatching(func(cmdline string) bool { return strings.Contains(cmdline, dir) })
	cgroups := cgroupsUnder(kubeCgroup) // deepest first
	for _, cg := range cgroups {
		killCgroup(cg)
	}
	unmountUnder(dir)
	for _, cg := range cgroups {
		_ = os.Remove(cg)
	}
	// The veths first: a deleted namespace is destroyed later, with its
	// end of them, and a next start would find their names taken.
	if links, err := net.Interfaces(); err == nil {
		for _, l := range links {
			if strings.HasPrefix(l.Name, kubeVeth) {
				_ = run("ip", "link", "delete", l.Name)
			}
		}
	}
	if entries, err := os.ReadDir("/run/netns"); err == nil {
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), kubeNetns) {
				_ = run("ip", "netns", "delete", e.Name())
			}
		}
	}
	_ = run("ip", "link", "delete", kubeBridge)
	restoreTunables(dir)
	// Paths the kubelet and containerd use whatever they are configured
	// with: shim and device plugin sockets (removed when nothing listens),
	// and the kubelet's links to its pods' logs.
	for _, d := range []string{"/run/containerd/s", "/var/lib/kubelet/device-plugins"} {
		removeDeadSockets(d)
	}
	_ = os.Remove("/var/lib/kubelet/device-plugins") // when empty
	_ = os.Remove("/var/lib/kubelet")
	links, _ := filepath.Glob("/var/log/containers/*.log")
	for _, l := range links {
		if target, err := os.Readlink(l); err == nil && strings.HasPrefix(target, dir+"/") {
			_ = os.Remove(l)
		}
	}
	if keepLogs {
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if e.Name() != "logs" {
				_ = os.RemoveAll(filepath.Join(dir, e.Name()))
			}
		}
		return
	}
	_ = os.RemoveAll(dir)
}

// removeDeadSockets removes the unix sockets in dir that nothing listens on.
func removeDeadSockets(dir string) {
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		path := filepath.Join(dir, e.Name())
		if e.Type()&os.ModeSocket == 0 {
			continue
		}
		if conn, err := net.DialTimeout("unix", path, time.Second); err == nil {
			_ = conn.Close()
			continue
		}
		_ = os.Remove(path)
	}
}

// killMatching SIGKILLs every process whose command line matches, and
// waits until they are gone.
func killMatching(match func(cmdline string) bool) {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		raw, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !match(string(bytes.ReplaceAll(raw, []byte{0}, []byte{' '}))) {
			continue
		}
		_ = syscall.Kill(pid, syscall.SIGKILL)
		pids = append(pids, pid)
	}
	waitGone(pids)
}

// killCgroup SIGKILLs the processes of a cgroup folder.
func killCgroup(dir string) {
	raw, _ := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	var pids []int
	for _, f := range strings.Fields(string(raw)) {
		if pid, err := strconv.Atoi(f); err == nil {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			pids = append(pids, pid)
		}
	}
	waitGone(pids)
}

func waitGone(pids []int) {
	deadline := time.Now().Add(10 * time.Second)
	for _, pid := range pids {
		for time.Now().Before(deadline) && syscall.Kill(pid, 0) == nil {
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// cgroupsUnder lists the cgroup folders whose top folder starts with
// prefix, in every hierarchy, deepest first.
func cgroupsUnder(prefix string) []string {
	var dirs []string
	tops, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "*", prefix+"*"))
	if cg2, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", prefix+"*")); len(cg2) > 0 {
		tops = append(tops, cg2...)
	}
	for _, top := range tops {
		_ = filepath.WalkDir(top, func(path string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, path)
			}
			return nil
		})
	}
	sort.Slice(dirs, func(i, j int) bool { return strings.Count(dirs[i], "/") > strings.Count(dirs[j], "/") })
	return dirs
}

// makeCgroup creates the kubelet's cgroup root (the kubelet refuses a root
// that does not exist): on cgroup v2 one folder; on v1 one in every
// hierarchy, cpuset's with the CPUs and memory nodes of the top, as a new
// cpuset starts empty.
func makeCgroup(name string) error {
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		return os.MkdirAll(filepath.Join("/sys/fs/cgroup", name), 0o755)
	}
	hierarchies, _ := filepath.Glob("/sys/fs/cgroup/*")
	for _, h := range hierarchies {
		if fi, err := os.Lstat(h); err != nil || !fi.IsDir() || filepath.Base(h) == "unified" {
			continue // cpu,cpuacct style links, and the v2 hierarchy of systemd
		}
		dir := filepath.Join(h, name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		if filepath.Base(h) == "cpuset" {
			for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
				v, err := os.ReadFile(filepath.Join(h, f))
				if err != nil {
					return err
				}
				if err := os.WriteFile(filepath.Join(dir, f), v, 0o644); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// unmountUnder detaches every mount under dir, deepest first.
func unmountUnder(dir string) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return
	}
	var points []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fields := strings.Fields(sc.Text()); len(fields) > 4 && strings.HasPrefix(fields[4], dir+"/") {
			points = append(points, fields[4])
		}
	}
	_ = f.Close()
	sort.Slice(points, func(i, j int) bool { return len(points[i]) > len(points[j]) })
	for _, p := range points {
		_ = syscall.Unmount(p, syscall.MNT_DETACH)
	}
}

// saveTunables records the kernel settings the kubelet changes, unless a
// record from a killed run is there (the machine's values are in it).
func saveTunables(dir string) error {
	path := filepath.Join(dir, "..", "kube-tunables")
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	var b strings.Builder
	for _, k := range kubeletTunables {
		v, err := os.ReadFile(filepath.Join("/proc/sys", k))
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "%s %s", k, v)
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

// restoreTunables writes the recorded kernel settings back and drops the
// record.
func restoreTunables(dir string) {
	path := filepath.Join(dir, "..", "kube-tunables")
	raw, err := os.ReadFile(path)
	if err != nil {
		return
	}
	for _, line := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		if k, v, ok := strings.Cut(line, " "); ok {
			_ = os.WriteFile(filepath.Join("/proc/sys", k), []byte(v+"\n"), 0o644)
		}
	}
	_ = os.Remove(path)
}

func run(name string, args ...string) error {
	_, err := output(exec.Command(name, args...))
	return err
}

// output runs cmd and returns what it printed; its error names the
// command and carries that output.
func output(cmd *exec.Cmd) (string, error) {
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s: %w: %s", strings.Join(cmd.Args, " "), err, bytes.TrimSpace(out))
	}
	return string(out), nil
}
