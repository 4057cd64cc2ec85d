package chaos

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/incusops/redis-sentinel-operator/internal/testenv"
)

// operator is the operator binary running as its own process against the
// envtest API server, logging at debug level. All its runs append to one
// log file, scanned for passwords at the end of the suite.
type operator struct {
	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{}
	probe   string // http://127.0.0.1:port/readyz
	logPath string
	starts  int
	// passwordGrace is the --password-grace of the next start (0:
	// chaosPasswordGrace).
	passwordGrace time.Duration
	// running is the pid of the running process (0: none), readable
	// without the lock, and sigkilled marks a SIGKILL sent by sigkillNow:
	// a start that sees its process die then returns instead of failing.
	running   atomic.Int64
	sigkilled atomic.Bool
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
	grace := o.passwordGrace
	if grace == 0 {
		grace = chaosPasswordGrace
	}
	// Debug level: the password scan covers what the operator logs there.
	cmd := exec.Command(managerBin,
		"--metrics-bind-address", "127.0.0.1:0",
		"--health-probe-bind-address", fmt.Sprintf("127.0.0.1:%d", port),
		"--resync-period", "5s",
		"--password-grace", grace.String(),
		"--log-level", "debug",
	)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfigPath)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // never outlive the suite
	if err := cmd.Start(); err != nil {
		_ = logFile.Close()
		t.Fatal(err)
	}
	exited := make(chan struct{})
	o.sigkilled.Store(false)
	o.running.Store(int64(cmd.Process.Pid))
	go func() { _ = cmd.Wait(); _ = logFile.Close(); o.running.Store(0); close(exited) }()
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
			if o.sigkilled.Load() {
				t.Logf("operator pid %d SIGKILLed while starting", cmd.Process.Pid)
				return
			}
			t.Fatalf("the operator exited at start:\n%s", o.tail(30))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the operator's readiness endpoint did not answer within a minute:\n%s", o.tail(30))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// sigkillNow SIGKILLs the running operator at once, from any goroutine,
// also while start waits for it (which then returns): a kill point is hit
// the moment it is seen. kill (or stop) reaps the process afterwards.
func (o *operator) sigkillNow() bool {
	pid := o.running.Load()
	if pid == 0 {
		return false
	}
	o.sigkilled.Store(true)
	return syscall.Kill(int(pid), syscall.SIGKILL) == nil
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

// logSize is the length of the log file now: where lines of what the
// operator does from now on start.
func (o *operator) logSize() int64 {
	if o.logPath == "" {
		return 0
	}
	st, err := os.Stat(o.logPath)
	if err != nil {
		return 0
	}
	return st.Size()
}

// logLine is one JSON line of the operator's log.
type logLine struct {
	Msg    string `json:"msg"`
	Action string `json:"action"`
	Reason string `json:"reason"`
	raw    string
}

// nextLogLine polls the log from offset (every 2 ms) for a complete line
// that holds marker and matches, until stop says to give up. It returns
// the line and the offset after it. The poll is tight so that a SIGKILL
// sent on the line lands as close behind it as possible.
func (o *operator) nextLogLine(from int64, marker string, match func(logLine) bool, stop func() bool) (logLine, int64, bool) {
	var pending []byte
	offset := from
	buf := make([]byte, 64<<10)
	f, err := os.Open(o.logPath)
	if err != nil {
		return logLine{}, from, false
	}
	defer f.Close()
	for {
		n, _ := f.ReadAt(buf, offset)
		if n > 0 {
			offset += int64(n)
			pending = append(pending, buf[:n]...)
			for {
				i := bytes.IndexByte(pending, '\n')
				if i < 0 {
					break
				}
				raw := string(pending[:i])
				pending = pending[i+1:]
				if !strings.Contains(raw, marker) {
					continue
				}
				var l logLine
				if json.Unmarshal([]byte(raw), &l) != nil {
					continue
				}
				l.raw = raw
				if match(l) {
					return l, offset - int64(len(pending)), true
				}
			}
			continue
		}
		if stop() {
			return logLine{}, offset - int64(len(pending)), false
		}
		time.Sleep(2 * time.Millisecond)
	}
}
