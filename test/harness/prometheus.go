package harness

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/incusops/redis-sentinel-operator/internal/testenv"
)

// PrometheusBinary is Debian's prometheus (make test-deps installs it).
const PrometheusBinary = "/usr/bin/prometheus"

// Prometheus is a real Prometheus server run by a test: its own process,
// TSDB and loopback port.
type Prometheus struct {
	// URL is its base address, e.g. http://127.0.0.1:40123.
	URL string
	// API is the client_golang client of its HTTP API.
	API    promv1.API
	cmd    *exec.Cmd
	exited chan struct{}
	log    *os.File
}

// StartPrometheus writes config to dir/prometheus.yml, starts Prometheus on
// a free loopback port with its data under dir, and waits until it is
// ready. A missing binary is an *testenv.UnavailableError; a config it
// refuses is not.
func StartPrometheus(ctx context.Context, dir string, config []byte) (*Prometheus, error) {
	if _, err := os.Stat(PrometheusBinary); err != nil {
		return nil, &testenv.UnavailableError{Err: fmt.Errorf("prometheus (run `make test-deps`): %w", err)}
	}
	cfgPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, config, 0o600); err != nil {
		return nil, err
	}
	port, err := testenv.FreePort()
	if err != nil {
		return nil, err
	}
	log, err := os.Create(filepath.Join(dir, "prometheus.log"))
	if err != nil {
		return nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	cmd := exec.Command(PrometheusBinary,
		"--config.file="+cfgPath,
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr,
		"--log.level=warn")
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		log.Close()
		return nil, err
	}
	p := &Prometheus{URL: "http://" + addr, cmd: cmd, exited: make(chan struct{}), log: log}
	go func() { _ = cmd.Wait(); close(p.exited) }()
	ready := func(ctx context.Context) (bool, error) {
		select {
		case <-p.exited:
			return false, errors.New("prometheus exited during start-up")
		default:
		}
		resp, err := http.Get(p.URL + "/-/ready")
		if err != nil {
			return false, nil
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	}
	if err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, ready); err != nil {
		p.Stop()
		out, _ := os.ReadFile(log.Name())
		return nil, fmt.Errorf("prometheus not ready: %w; its log:\n%s", err, out)
	}
	client, err := api.NewClient(api.Config{Address: p.URL})
	if err != nil {
		p.Stop()
		return nil, err
	}
	p.API = promv1.NewAPI(client)
	return p, nil
}

// Stop terminates Prometheus (SIGKILL when SIGTERM takes over 10 s) and
// waits for it.
func (p *Prometheus) Stop() {
	testenv.Terminate(p.cmd.Process, p.exited, 10*time.Second)
	p.log.Close()
}

// Log returns what Prometheus logged.
func (p *Prometheus) Log() string {
	out, _ := os.ReadFile(p.log.Name())
	return string(out)
}
