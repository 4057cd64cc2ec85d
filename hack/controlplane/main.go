/*
Command lab-controlplane runs the lab's local Kubernetes control plane: the
same kube-apiserver + etcd as envtest (hack/envtest-bins.sh), both bound to
127.0.0.1 only. It installs the project's CRDs, provisions an admin user
("lab-admin", group system:masters), writes that user's kubeconfig (mode
0600), prints "ready" and runs until SIGTERM or SIGINT, then stops both
servers and removes the kubeconfig.

etcd keeps its data in --etcd-data-dir (default .lab/etcd). envtest deletes
only data directories it created itself, so this one survives a stop: a
restarted control plane finds the formations it had (hack/lab.sh down
removes the whole .lab folder). The API server's certificates are new on
every start (a temporary folder envtest removes), so the kubeconfig is
rewritten each time.

hack/lab.sh starts it; by hand:

	go run ./hack/controlplane --assets "$(hack/envtest-bins.sh)"
*/
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/envtest"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/incusops/redis-sentinel-operator/internal/testenv"
)

const loopback = "127.0.0.1"

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "lab-controlplane:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		assets       string
		crdDir       string
		kubeconfig   string
		etcdDataDir  string
		logDir       string
		apiPort      int
		startTimeout time.Duration
		stopTimeout  time.Duration
	)
	defaultAssets := os.Getenv("RSF_ENVTEST_ASSETS")
	if defaultAssets == "" {
		defaultAssets = os.Getenv("KUBEBUILDER_ASSETS")
	}
	// An own flag set: controller-runtime registers --kubeconfig on the global one.
	fs := flag.NewFlagSet("lab-controlplane", flag.ExitOnError)
	fs.StringVar(&assets, "assets", defaultAssets, "folder with kube-apiserver and etcd (hack/envtest-bins.sh prints it; default $RSF_ENVTEST_ASSETS, else $KUBEBUILDER_ASSETS)")
	fs.StringVar(&crdDir, "crd-dir", "config/crd/bases", "folder of CRD manifests to install")
	fs.StringVar(&kubeconfig, "kubeconfig", ".lab/kubeconfig", "where to write the lab-admin kubeconfig (mode 0600; removed on stop)")
	fs.StringVar(&etcdDataDir, "etcd-data-dir", ".lab/etcd", "etcd data folder (kept on stop)")
	fs.StringVar(&logDir, "log-dir", ".lab", "folder for kube-apiserver.log and etcd.log")
	fs.IntVar(&apiPort, "port", 0, "API server port on 127.0.0.1; 0 picks a free one")
	fs.DurationVar(&startTimeout, "start-timeout", 90*time.Second, "how long each of etcd and kube-apiserver may take to start")
	fs.DurationVar(&stopTimeout, "stop-timeout", 20*time.Second, "how long each of etcd and kube-apiserver may take to stop")
	_ = fs.Parse(os.Args[1:])
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	ctrllog.SetLogger(zap.New(zap.WriteTo(os.Stderr)))

	if assets == "" {
		return errors.New("--assets is required (the folder hack/envtest-bins.sh prints)")
	}
	apiserverPath, etcdPath := filepath.Join(assets, "kube-apiserver"), filepath.Join(assets, "etcd")
	for _, p := range []string{apiserverPath, etcdPath} {
		if _, err := os.Stat(p); err != nil {
			return fmt.Errorf("--assets %s: %w", assets, err)
		}
	}
	if _, err := os.Stat(crdDir); err != nil {
		return fmt.Errorf("--crd-dir: %w", err)
	}
	for _, dir := range []string{etcdDataDir, logDir, filepath.Dir(kubeconfig)} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return err
		}
	}
	// etcd refuses a data folder other users can read.
	if err := os.Chmod(etcdDataDir, 0o700); err != nil {
		return err
	}
	apiLog, err := openLog(filepath.Join(logDir, "kube-apiserver.log"))
	if err != nil {
		return err
	}
	defer apiLog.Close()
	etcdLog, err := openLog(filepath.Join(logDir, "etcd.log"))
	if err != nil {
		return err
	}
	defer etcdLog.Close()

	// Pin both client endpoints to loopback instead of relying on envtest's
	// default ("localhost", resolved): the lab serves this machine only.
	if apiPort == 0 {
		if apiPort, err = testenv.FreePort(); err != nil {
			return err
		}
	}
	etcdPort, err := testenv.FreePort()
	if err != nil {
		return err
	}
	apiServer := &envtest.APIServer{
		Path: apiserverPath,
		Out:  apiLog,
		Err:  apiLog,
	}
	apiServer.SecureServing.ListenAddr = envtest.ListenAddr{Address: loopback, Port: strconv.Itoa(apiPort)}
	etcd := &envtest.Etcd{
		Path:    etcdPath,
		DataDir: etcdDataDir,
		URL:     &url.URL{Scheme: "http", Host: net.JoinHostPort(loopback, strconv.Itoa(etcdPort))},
		Out:     etcdLog,
		Err:     etcdLog,
	}
	useExisting := false
	env := &envtest.Environment{
		ControlPlane:             envtest.ControlPlane{APIServer: apiServer, Etcd: etcd},
		UseExistingCluster:       &useExisting,
		CRDDirectoryPaths:        []string{crdDir},
		ErrorIfCRDPathMissing:    true,
		ControlPlaneStartTimeout: startTimeout,
		ControlPlaneStopTimeout:  stopTimeout,
	}

	// Catch the signals before starting, so that a stop requested while the
	// servers come up still stops them.
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer cancel()

	fmt.Printf("starting etcd (data in %s) and kube-apiserver from %s\n", etcdDataDir, assets)
	if _, err := env.Start(); err != nil {
		_ = env.Stop()
		return fmt.Errorf("starting the control plane (see %s and %s): %w", apiLog.Name(), etcdLog.Name(), err)
	}
	stop := func() error {
		_ = os.Remove(kubeconfig)
		fmt.Println("stopping kube-apiserver and etcd")
		if err := env.Stop(); err != nil {
			return fmt.Errorf("stopping the control plane: %w", err)
		}
		fmt.Println("stopped")
		return nil
	}

	if err := checkLoopback(apiServer.SecureServing.Address, etcd.URL.Hostname()); err != nil {
		return errors.Join(err, stop())
	}
	admin, err := env.AddUser(envtest.User{Name: "lab-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return errors.Join(fmt.Errorf("provisioning the lab-admin user: %w", err), stop())
	}
	kc, err := admin.KubeConfig()
	if err != nil {
		return errors.Join(fmt.Errorf("rendering the kubeconfig: %w", err), stop())
	}
	if err := writeFileAtomic(kubeconfig, kc, 0o600); err != nil {
		return errors.Join(err, stop())
	}
	fmt.Printf("kube-apiserver https://%s, etcd %s, CRDs from %s, kubeconfig %s\n",
		net.JoinHostPort(apiServer.SecureServing.Address, apiServer.SecureServing.Port), etcd.URL, crdDir, kubeconfig)
	fmt.Println("ready")

	<-ctx.Done()
	fmt.Println("signal received")
	return stop()
}

func openLog(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
}

func checkLoopback(hosts ...string) error {
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip == nil || !ip.IsLoopback() {
			return fmt.Errorf("refusing to serve on %q: the lab control plane binds to loopback only", h)
		}
	}
	return nil
}

func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
