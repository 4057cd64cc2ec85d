package harness

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	"github.com/incusops/redis-sentinel-operator/internal/testenv"
)

// Podman runs containers for the tests of the shipped image: Debian's
// podman, rootful, with the settings these machines need: no systemd
// (cgroupfs, file events), and runc, as crun refuses their hybrid cgroup
// layout ("cgroups in hybrid mode not supported").
var Podman = []string{"podman", "--cgroup-manager=cgroupfs", "--events-backend=file", "--runtime=runc"}

// PodmanCommand is a podman command line.
func PodmanCommand(ctx context.Context, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, Podman[0], append(slices.Clone(Podman[1:]), args...)...)
}

// podman runs one podman command and returns its trimmed output.
func podman(ctx context.Context, args ...string) (string, error) {
	out, err := PodmanCommand(ctx, args...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("podman %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return strings.TrimSpace(string(out)), nil
}

// LoadImage copies the image `make image` wrote as an OCI layout into
// podman's store and tags it ref's repository:tag. The copy keeps the
// manifest, so the image's digest (what `make deploy` pins) names it there
// too; `podman load` of the archive would convert it and change it. A
// missing podman or layout is an *testenv.UnavailableError.
func LoadImage(ctx context.Context, layoutDir, tag string) error {
	if _, err := exec.LookPath(Podman[0]); err != nil {
		return &testenv.UnavailableError{Err: fmt.Errorf("podman (make test-deps installs it): %w", err)}
	}
	if _, err := os.Stat(filepath.Join(layoutDir, "index.json")); err != nil {
		return &testenv.UnavailableError{Err: fmt.Errorf("the image's OCI layout (make image builds it): %w", err)}
	}
	id, err := podman(ctx, "pull", "--quiet", "oci:"+layoutDir)
	if err != nil {
		return err
	}
	_, err = podman(ctx, "tag", id, tag)
	return err
}

// Pod is one replica of the operator's Deployment, run by podman as a
// kubelet would run its pod: the image, command line, environment, user,
// groups, read-only root, capabilities, host network and the Incus socket
// of the pod template, and the service account's token mounted where
// client-go's in-cluster configuration reads it.
type Pod struct {
	Name string
	// Probes is the base URL of its health probes, e.g. http://127.0.0.1:8081.
	Probes string
	dir    string
}

// PodOptions say how the pod differs from its template on this machine.
type PodOptions struct {
	// Name of the podman container, and the pod's hostname: a kubelet
	// gives a host-network pod the node's, but two replicas on one node
	// get their own here so that the leader lease's holder (hostname_UUID)
	// tells which one leads.
	Name string
	// ProbePort and MetricsPort, when not 0, replace the template's ports:
	// two host-network replicas on one node cannot bind the same ones.
	ProbePort, MetricsPort int
	// Token is the service account token to mount.
	Token string
}

// RunPod starts the Deployment's pod with podman. cfg is the API server
// the pod talks to (its CA is mounted as the service account's ca.crt;
// its host and port become KUBERNETES_SERVICE_HOST/PORT).
func RunPod(ctx context.Context, d *appsv1.Deployment, cfg *rest.Config, image string, o PodOptions) (*Pod, error) {
	spec := d.Spec.Template.Spec
	if len(spec.Containers) != 1 {
		return nil, fmt.Errorf("the Deployment has %d containers, want 1", len(spec.Containers))
	}
	c := spec.Containers[0]
	api, err := url.Parse(cfg.Host)
	if err != nil {
		return nil, err
	}
	apiHost, apiPort, err := net.SplitHostPort(api.Host)
	if err != nil {
		return nil, err
	}

	dir, err := os.MkdirTemp("", "rsf-pod-")
	if err != nil {
		return nil, err
	}
	started := false
	defer func() {
		if !started {
			_ = os.RemoveAll(dir)
		}
	}()
	// Readable by the pod's non-root user, like a projected volume.
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, err
	}
	for file, data := range map[string][]byte{"token": []byte(o.Token), "ca.crt": cfg.CAData, "namespace": []byte(d.Namespace)} {
		if err := os.WriteFile(filepath.Join(dir, file), data, 0o644); err != nil {
			return nil, err
		}
	}

	// podman raises the open files and processes limits above the
	// hard limits of these machines, which lack CAP_SYS_RESOURCE: keep
	// this process's (as a kubelet's runtime does) and a process limit
	// far above the operator's few dozen threads.
	var nofile syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &nofile); err != nil {
		return nil, err
	}
	args := []string{"run", "--detach", "--name", o.Name, "--hostname", o.Name, "--replace",
		fmt.Sprintf("--ulimit=nofile=%d:%d", nofile.Cur, nofile.Max), "--ulimit=nproc=4096:4096"}
	if spec.HostNetwork {
		args = append(args, "--network=host")
	}
	args = append(args, securityArgs(spec.SecurityContext, c.SecurityContext)...)
	if m := c.Resources.Limits.Memory(); !m.IsZero() {
		args = append(args, "--memory="+strconv.FormatInt(m.Value(), 10))
	}
	args = append(args, "--volume", dir+":/var/run/secrets/kubernetes.io/serviceaccount:ro",
		"--env", "KUBERNETES_SERVICE_HOST="+apiHost, "--env", "KUBERNETES_SERVICE_PORT="+apiPort)
	for _, e := range c.Env {
		v := e.Value
		if e.ValueFrom != nil {
			if e.ValueFrom.FieldRef == nil || e.ValueFrom.FieldRef.FieldPath != "metadata.namespace" {
				return nil, fmt.Errorf("env %s: only metadata.namespace field references are supported", e.Name)
			}
			v = d.Namespace
		}
		args = append(args, "--env", e.Name+"="+v)
	}
	for _, m := range c.VolumeMounts {
		v, ok := volume(spec.Volumes, m.Name)
		if !ok || v.HostPath == nil {
			return nil, fmt.Errorf("volume mount %s: only hostPath volumes are supported", m.Name)
		}
		opt := ""
		if m.ReadOnly {
			opt = ":ro"
		}
		args = append(args, "--volume", v.HostPath.Path+":"+m.MountPath+opt)
	}
	if len(c.Command) > 0 {
		args = append(args, "--entrypoint", c.Command[0])
	}
	args = append(args, image)
	if len(c.Command) > 1 {
		args = append(args, c.Command[1:]...)
	}
	if c.LivenessProbe == nil || c.LivenessProbe.HTTPGet == nil {
		return nil, errors.New("the Deployment's container has no HTTP liveness probe")
	}
	probePort := c.LivenessProbe.HTTPGet.Port.IntValue()
	for _, a := range c.Args {
		switch {
		case o.ProbePort != 0 && strings.HasPrefix(a, "--health-probe-bind-address="):
			a = "--health-probe-bind-address=:" + strconv.Itoa(o.ProbePort)
		case o.MetricsPort != 0 && strings.HasPrefix(a, "--metrics-bind-address="):
			a = "--metrics-bind-address=:" + strconv.Itoa(o.MetricsPort)
		}
		args = append(args, a)
	}
	if o.ProbePort != 0 {
		probePort = o.ProbePort
		if !slices.ContainsFunc(c.Args, func(a string) bool { return strings.HasPrefix(a, "--health-probe-bind-address=") }) {
			args = append(args, "--health-probe-bind-address=:"+strconv.Itoa(o.ProbePort))
		}
	}
	if _, err := podman(ctx, args...); err != nil {
		return nil, err
	}
	started = true
	return &Pod{Name: o.Name, Probes: "http://127.0.0.1:" + strconv.Itoa(probePort), dir: dir}, nil
}

func volume(vs []corev1.Volume, name string) (corev1.Volume, bool) {
	for _, v := range vs {
		if v.Name == name {
			return v, true
		}
	}
	return corev1.Volume{}, false
}

// securityArgs maps the pod's and the container's security context to
// podman's flags.
func securityArgs(pod *corev1.PodSecurityContext, c *corev1.SecurityContext) []string {
	var args []string
	if pod != nil {
		if pod.RunAsUser != nil {
			user := strconv.FormatInt(*pod.RunAsUser, 10)
			if pod.RunAsGroup != nil {
				user += ":" + strconv.FormatInt(*pod.RunAsGroup, 10)
			}
			args = append(args, "--user", user)
		}
		for _, g := range pod.SupplementalGroups {
			args = append(args, "--group-add", strconv.FormatInt(g, 10))
		}
	}
	if c == nil {
		return args
	}
	if ptr.Deref(c.ReadOnlyRootFilesystem, false) {
		// No tmpfs on /tmp, /run and /var/tmp either: the pod gets none.
		args = append(args, "--read-only", "--read-only-tmpfs=false")
	}
	if !ptr.Deref(c.AllowPrivilegeEscalation, true) {
		args = append(args, "--security-opt", "no-new-privileges")
	}
	if c.Capabilities != nil {
		for _, d := range c.Capabilities.Drop {
			args = append(args, "--cap-drop", string(d))
		}
		for _, a := range c.Capabilities.Add {
			args = append(args, "--cap-add", string(a))
		}
	}
	if ptr.Deref(c.Privileged, false) {
		args = append(args, "--privileged")
	}
	return args
}

// Kill SIGKILLs the pod's process (its container stays, stopped).
func (p *Pod) Kill(ctx context.Context) error {
	_, err := podman(ctx, "kill", "--signal", "KILL", p.Name)
	return err
}

// Stop stops the pod as a kubelet deleting it does: SIGTERM, SIGKILL after
// grace.
func (p *Pod) Stop(ctx context.Context, grace time.Duration) error {
	_, err := podman(ctx, "stop", "--time", strconv.Itoa(int(grace.Seconds())), p.Name)
	return err
}

// Start starts the pod's stopped container again.
func (p *Pod) Start(ctx context.Context) error {
	_, err := podman(ctx, "start", p.Name)
	return err
}

// Running reports whether the pod's container runs.
func (p *Pod) Running(ctx context.Context) bool {
	out, err := podman(ctx, "inspect", "--format", "{{.State.Running}}", p.Name)
	return err == nil && out == "true"
}

// Logs are the pod's stdout and stderr.
func (p *Pod) Logs(ctx context.Context) string {
	out, err := PodmanCommand(ctx, "logs", p.Name).CombinedOutput()
	if err != nil {
		return fmt.Sprintf("podman logs %s: %v: %s", p.Name, err, out)
	}
	return string(out)
}

// Remove deletes the pod's container and its token folder.
func (p *Pod) Remove(ctx context.Context) {
	_, _ = podman(ctx, "rm", "--force", "--time", "5", p.Name)
	_ = os.RemoveAll(p.dir)
}

// ServiceAccountToken asks the API server for a token of the service
// account (TokenRequest), as the kubelet does for a pod.
func ServiceAccountToken(ctx context.Context, cs kubernetes.Interface, namespace, name string, ttl time.Duration) (string, error) {
	tr, err := cs.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To(int64(ttl.Seconds()))},
	}, metav1.CreateOptions{})
	if err != nil {
		return "", err
	}
	if tr.Status.Token == "" {
		return "", errors.New("TokenRequest returned no token")
	}
	return tr.Status.Token, nil
}
