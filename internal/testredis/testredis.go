// Package testredis runs real redis-server and redis-sentinel processes on
// loopback for tests: Debian's binaries, a config file in a temp folder, a
// free port, and readiness checked with an authenticated PING.
package testredis

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/incusops/redis-sentinel-operator/internal/testenv"
)

// Proc is a running redis-server or redis-sentinel.
type Proc struct {
	Port int
	// Dir holds the config file and anything the process writes.
	Dir string
	// Conf is the config file it runs on, for a restart with StartFile.
	Conf string
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
	once sync.Once
}

// Addr is 127.0.0.1:port.
func (p *Proc) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(p.Port)) }

// Output is what the process printed.
func (p *Proc) Output() string { return p.out.String() }

// Binary finds redis-server (Debian's redis-server package); sentinel mode is
// the same binary with --sentinel.
func Binary() (string, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return "", fmt.Errorf("redis-server not installed (apt-get install -y redis-server): %w", err)
	}
	return bin, nil
}

// Start writes conf into dir and starts redis-server on it (as a sentinel
// when sentinel is true), then waits until it answers PING with password on
// port. The file stays writable: Sentinel and CONFIG REWRITE rewrite it.
func Start(dir string, port int, conf []byte, password string, sentinel bool) (*Proc, error) {
	return StartAs(dir, port, conf, "", password, sentinel)
}

// StartAs is Start for a server whose default user may be off: readiness
// is checked with AUTH username password (HELLO ... AUTH).
func StartAs(dir string, port int, conf []byte, username, password string, sentinel bool) (*Proc, error) {
	return startConf(dir, port, conf, username, password, sentinel, nil)
}

// StartTLS is Start for a server whose conf listens with TLS on port (its
// tls-port): readiness is checked over TLS with tc, which must carry a
// client certificate when conf sets tls-auth-clients yes.
func StartTLS(dir string, port int, conf []byte, password string, sentinel bool, tc *tls.Config) (*Proc, error) {
	return startConf(dir, port, conf, "", password, sentinel, tc)
}

func startConf(dir string, port int, conf []byte, username, password string, sentinel bool, tc *tls.Config) (*Proc, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, fmt.Sprintf("redis-%d.conf", port))
	if err := os.WriteFile(path, conf, 0o600); err != nil {
		return nil, err
	}
	return startFile(dir, port, path, username, password, sentinel, tc)
}

// StartFile starts redis-server on an existing config file, e.g. one a
// sentinel rewrote before it was stopped.
func StartFile(dir string, port int, path, password string, sentinel bool) (*Proc, error) {
	return startFile(dir, port, path, "", password, sentinel, nil)
}

func startFile(dir string, port int, path, username, password string, sentinel bool, tc *tls.Config) (*Proc, error) {
	bin, err := Binary()
	if err != nil {
		return nil, err
	}
	args := []string{path}
	if sentinel {
		args = append(args, "--sentinel")
	}
	p := &Proc{Port: port, Dir: dir, Conf: path, out: &syncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	// Never outlive the test binary.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	if err := p.waitReady(username, password, tc); err != nil {
		p.Stop()
		return nil, err
	}
	return p, nil
}

func (p *Proc) waitReady(username, password string, tc *tls.Config) error {
	c := redis.NewClient(&redis.Options{Addr: p.Addr(), Username: username, Password: password, TLSConfig: tc, MaxRetries: -1, DialTimeout: 200 * time.Millisecond, DialerRetries: 1, DisableIdentity: true})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("redis-server on port %d exited: %s", p.Port, p.Output())
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("redis-server on port %d not ready: %v; output: %s", p.Port, err, p.Output())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop terminates the process (SIGTERM, SIGKILL after 5 s) and waits.
func (p *Proc) Stop() {
	p.once.Do(func() {
		testenv.Terminate(p.cmd.Process, p.done, 5*time.Second)
	})
}

// StopAtCleanup stops p when t ends; if t failed, it logs what p printed and
// the files named (a logfile its config sets, say).
func (p *Proc) StopAtCleanup(t testing.TB, logs ...string) {
	t.Cleanup(func() {
		p.Stop()
		if !t.Failed() {
			return
		}
		t.Logf("redis-server on port %d printed:\n%s", p.Port, p.Output())
		for _, f := range logs {
			if b, err := os.ReadFile(f); err == nil {
				t.Logf("%s:\n%s", f, b)
			}
		}
	})
}

// Freeze stops the process (SIGSTOP) without closing its sockets, like a
// host that vanished: connections stay open and nothing answers. thaw
// resumes it.
func (p *Proc) Freeze() (thaw func()) {
	_ = p.cmd.Process.Signal(syscall.SIGSTOP)
	return func() { _ = p.cmd.Process.Signal(syscall.SIGCONT) }
}

// Kill stops the process at once, as a crash would.
func (p *Proc) Kill() {
	p.once.Do(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
	})
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *syncBuffer) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(b)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}
