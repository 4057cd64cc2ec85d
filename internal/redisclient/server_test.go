package redisclient

import (
	"bytes"
	"context"
	"fmt"
	"log"
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
)

// The tests run real redis-server processes on loopback ports. When
// redis-server cannot be found or started they are skipped, except under
// CI=true, where that is a failure.

const testPassword = "test-Pa55-word"

// shared is the redis-server started by TestMain for the whole package.
var (
	shared    *redisProc
	sharedErr error
)

// quietLogger drops go-redis's own log lines ("failed to dial ..."), which
// the tests provoke on purpose.
type quietLogger struct{}

func (quietLogger) Printf(context.Context, string, ...any) {}

func TestMain(m *testing.M) {
	redis.SetLogger(quietLogger{})
	dir, err := os.MkdirTemp("", "redisclient-test-")
	if err != nil {
		log.Fatal(err)
	}
	shared, sharedErr = startRedis(filepath.Join(dir, "shared"), testPassword)
	if sharedErr != nil && os.Getenv("CI") == "true" {
		_ = os.RemoveAll(dir)
		log.Fatalf("CI=true and redis-server could not be started: %v", sharedErr)
	}
	code := m.Run()
	if shared != nil {
		shared.stop()
	}
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// needRedis returns the shared server, or skips (fails under CI=true).
func needRedis(tb testing.TB) *redisProc {
	tb.Helper()
	if shared == nil {
		unavailable(tb, sharedErr)
	}
	return shared
}

func unavailable(tb testing.TB, err error) {
	tb.Helper()
	if os.Getenv("CI") == "true" {
		tb.Fatalf("redis-server unavailable under CI=true: %v", err)
	}
	tb.Skipf("redis-server unavailable: %v", err)
}

type redisProc struct {
	cmd  *exec.Cmd
	port int
	out  *syncBuffer

	stopOnce sync.Once
	done     chan struct{}
}

func (p *redisProc) addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(p.port)) }

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// startRedis starts a password-protected, non-persistent redis-server on a
// free loopback port, working in dir.
func startRedis(dir, password string) (*redisProc, error) {
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		p, err := spawn(dir, port, password, false, nil,
			"--port", strconv.Itoa(port), "--bind", "127.0.0.1",
			"--save", "", "--appendonly", "no",
			"--requirepass", password, "--dir", dir,
			"--daemonize", "no", "--protected-mode", "yes",
		)
		if err == nil {
			return p, nil
		}
		lastErr = err
	}
	return nil, lastErr
}

// startSentinel starts a sentinel (redis-server --sentinel) on a free
// loopback port that monitors the master at masterPort as masterName, with
// quorum 1, its own requirepass and the master's auth-pass.
func startSentinel(dir string, masterPort int, masterName, masterPassword, sentinelPassword string) (*redisProc, error) {
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		conf := fmt.Sprintf(`port %d
bind 127.0.0.1
daemonize no
protected-mode yes
dir %s
logfile ""
requirepass %s
sentinel monitor %s 127.0.0.1 %d 1
sentinel auth-pass %s %s
sentinel down-after-milliseconds %s 5000
sentinel failover-timeout %s 60000
`, port, dir, sentinelPassword, masterName, masterPort, masterName, masterPassword, masterName, masterName)
		p, err := spawn(dir, port, sentinelPassword, true, []byte(conf))
		if err == nil {
			return p, nil
		}
		lastErr = err
	}
	return nil, lastErr
}

func spawn(dir string, port int, password string, sentinel bool, conf []byte, args ...string) (*redisProc, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, fmt.Errorf("redis-server not installed (apt-get install -y redis-server): %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	if conf != nil {
		// Sentinel rewrites its config file, so it must be writable.
		path := filepath.Join(dir, fmt.Sprintf("sentinel-%d.conf", port))
		if err := os.WriteFile(path, conf, 0o600); err != nil {
			return nil, err
		}
		args = append([]string{path}, args...)
		if sentinel {
			args = append(args, "--sentinel")
		}
	}
	out := &syncBuffer{}
	cmd := exec.Command(bin, args...)
	cmd.Stdout = out
	cmd.Stderr = out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &redisProc{cmd: cmd, port: port, out: out, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.done) }()

	// Wait until it answers an authenticated PING.
	c := redis.NewClient(&redis.Options{
		Addr: p.addr(), Password: password, MaxRetries: -1,
		DialTimeout: 200 * time.Millisecond, DialerRetries: 1,
	})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		err = c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return p, nil
		}
		select {
		case <-p.done:
			return nil, fmt.Errorf("redis-server exited: %s", out.String())
		default:
		}
		if time.Now().After(deadline) {
			p.stop()
			return nil, fmt.Errorf("redis-server on port %d not ready: %v; output: %s", port, err, out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop terminates the process (SIGTERM, then SIGKILL after 5 s) and waits.
func (p *redisProc) stop() {
	p.stopOnce.Do(func() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
}
