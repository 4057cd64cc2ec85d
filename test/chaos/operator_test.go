package chaos

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/incusops/redis-sentinel-operator/internal/testenv"
)

// operator is the operator binary running as its own process against the
// envtest API server. All its runs append to one log file, scanned for
// passwords at the end of the suite.
type operator struct {
	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{}
	probe   string // http://127.0.0.1:port/readyz
	logPath string
	starts  int
}

var op = &operator{}

// start runs the operator and waits until its readiness endpoint answers.
func (o *operator) start(t *testing.T) {
	t.Helper()
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.cmd != nil {
		t.Fatalf("the operator is already running (pid %d)", o.cmd.Process.Pid)
	}
	if o.logPath == "" {
		o.logPath = filepath.Join(workDir, "manager.log")
	}
	port, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	logFile, err := os.OpenFile(o.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	o.starts++
	cmd := exec.Command(managerBin,
		"--metrics-bind-address", "127.0.0.1:0",
		"--health-probe-bind-address", fmt.Sprintf("127.0.0.1:%d", port),
		"--resync-period", "5s",
		"--password-grace", "30s",
	)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfigPath)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // never outlive the suite
	if err := cmd.Start(); err != nil {
		_ = logFile.Close()
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); _ = logFile.Close(); close(exited) }()
	o.cmd, o.exited, o.probe = cmd, exited, fmt.Sprintf("http://127.0.0.1:%d/readyz", port)
	t.Logf("operator started (run %d, pid %d)", o.starts, cmd.Process.Pid)
	deadline := time.Now().Add(time.Minute)
	for {
		if resp, err := http.Get(o.probe); err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-exited:
			o.cmd = nil
			t.Fatalf("the operator exited at start:\n%s", o.tail(30))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the operator's readiness endpoint did not answer within a minute:\n%s", o.tail(30))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// kill SIGKILLs the operator and waits until it is gone.
func (o *operator) kill(t *testing.T) {
	t.Helper()
	o.signal(t, syscall.SIGKILL, 10*time.Second)
}

// stop asks the operator to stop (SIGTERM), killing it after 30 s.
func (o *operator) stop(t *testing.T) {
	t.Helper()
	o.signal(t, syscall.SIGTERM, 30*time.Second)
}

func (o *operator) signal(t *testing.T, sig syscall.Signal, grace time.Duration) {
	t.Helper()
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.cmd == nil {
		return
	}
	pid := o.cmd.Process.Pid
	_ = o.cmd.Process.Signal(sig)
	select {
	case <-o.exited:
	case <-time.After(grace):
		_ = o.cmd.Process.Kill()
		<-o.exited
	}
	o.cmd = nil
	t.Logf("operator pid %d stopped with %s", pid, sig)
}

// alive reports whether the operator process runs (it never exits on its
// own while the suite runs).
func (o *operator) alive() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.cmd == nil {
		return false
	}
	select {
	case <-o.exited:
		return false
	default:
		return true
	}
}

func (o *operator) pid() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.cmd == nil {
		return 0
	}
	return o.cmd.Process.Pid
}

// log is everything every run of the operator wrote.
func (o *operator) log() string {
	if o.logPath == "" {
		return ""
	}
	data, _ := os.ReadFile(o.logPath)
	return string(data)
}

func (o *operator) tail(n int) string {
	lines := strings.Split(strings.TrimSpace(o.log()), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
