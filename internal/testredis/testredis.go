// Package testredis runs real servers and sentinels of every engine
// (internal/engine: Redis 7 and Valkey 8) on loopback for tests: Debian's
// binaries, a config file in a temp folder, a free port, and readiness
// checked with an authenticated PING.
//
// A test that needs an engine calls Need (or runs its body per engine with
// ForEach): when the engine's binaries are missing it is skipped, or fails
// under CI=true (testenv.Unavailable), naming the packages to install.
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

	"github.com/incusops/redis-sentinel-operator/internal/engine"
	"github.com/incusops/redis-sentinel-operator/internal/testenv"
)

// Engines are the engines the real tests run against, in order.
var Engines = []engine.Name{engine.Redis, engine.Valkey}

// program is one engine's executable and the Debian package that ships it.
type program struct{ bin, pkg string }

// programs are each engine's server and sentinel, as Debian's units run
// them (the sentinel is the server's executable under another name, which
// starts it in Sentinel mode). install is how to get them.
var programs = map[engine.Name]struct {
	server, sentinel program
	install          string
}{
	engine.Redis: {
		server:   program{"redis-server", "redis-server"},
		sentinel: program{"redis-sentinel", "redis-sentinel"},
		install:  "apt-get install -y redis-server redis-sentinel redis-tools, or make test-deps",
	},
	engine.Valkey: {
		server:   program{"valkey-server", "valkey-server"},
		sentinel: program{"valkey-sentinel", "valkey-sentinel"},
		install: "make test-deps-backports, after make lab-host, which adds the bookworm-backports apt source; " +
			"or apt-get install -y -t bookworm-backports valkey-server valkey-sentinel valkey-tools",
	},
}

// Binary finds engine n's server executable (Debian's <engine>-server), or
// with sentinel its sentinel (<engine>-sentinel). "" is Redis.
func Binary(n engine.Name, sentinel bool) (string, error) {
	if n == "" {
		n = engine.Redis
	}
	p, ok := programs[n]
	if !ok {
		return "", fmt.Errorf("testredis: unknown engine %q", n)
	}
	prog := p.server
	if sentinel {
		prog = p.sentinel
	}
	bin, err := exec.LookPath(prog.bin)
	if err != nil {
		return "", fmt.Errorf("%s not installed (package %s: %s): %w", prog.bin, prog.pkg, p.install, err)
	}
	return bin, nil
}

// Need makes sure engine n's server and sentinel are installed: if not, t
// is skipped, or fails under CI=true.
func Need(t testing.TB, n engine.Name) {
	t.Helper()
	for _, sentinel := range []bool{false, true} {
		if _, err := Binary(n, sentinel); err != nil {
			testenv.Unavailable(t, string(n), err)
		}
	}
}

var versions sync.Map // binary path -> its --version line

// ForEach runs f as a subtest per engine, named after it ("redis",
// "valkey"), in parallel (each has its own servers and ports), after Need;
// each logs its server's version. The subtests run once the calling test
// function returns, so whatever f uses must not be torn down by the
// caller's defers.
func ForEach(t *testing.T, f func(t *testing.T, e engine.Engine)) {
	t.Helper()
	for _, n := range Engines {
		t.Run(string(n), func(t *testing.T) {
			t.Parallel()
			Need(t, n)
			bin, _ := Binary(n, false)
			v, ok := versions.Load(bin)
			if !ok {
				out, _ := exec.Command(bin, "--version").Output()
				v, _ = versions.LoadOrStore(bin, string(bytes.TrimSpace(out)))
			}
			t.Logf("%s", v)
			f(t, engine.MustOf(n))
		})
	}
}

// Spec is what to start and how to check that it is ready.
type Spec struct {
	// Engine is the program's engine; "" is Redis.
	Engine engine.Name
	// Sentinel starts the engine's sentinel instead of its server.
	Sentinel bool
	// Username and Password are what readiness logs in with: AUTH
	// username password (HELLO ... AUTH), or AUTH password for the
	// default user when Username is "".
	Username, Password string
	// TLS, when set, checks readiness over TLS: the port is the config's
	// tls-port. It must carry a client certificate when the config sets
	// tls-auth-clients yes.
	TLS *tls.Config
}

// Proc is a running server or sentinel.
type Proc struct {
	Port int
	// Dir holds the config file and anything the process writes.
	Dir string
	// Conf is the config file it runs on, for a restart (Restart).
	Conf string
	// Spec is what was started.
	Spec Spec
	name string // the program's name, for messages
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
	once sync.Once
}

// Addr is 127.0.0.1:port.
func (p *Proc) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(p.Port)) }

// Output is what the process printed.
func (p *Proc) Output() string { return p.out.String() }

// Start writes conf into dir and starts s's program on it, then waits until
// it answers PING on port as s says. The file stays writable: Sentinel and
// CONFIG REWRITE rewrite it.
func Start(dir string, port int, conf []byte, s Spec) (*Proc, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, fmt.Sprintf("%s-%d.conf", engine.Lookup(s.Engine).Name, port))
	if err := os.WriteFile(path, conf, 0o600); err != nil {
		return nil, err
	}
	return StartFile(dir, port, path, s)
}

// StartFile starts s's program on an existing config file, e.g. one a
// sentinel rewrote before it was stopped.
func StartFile(dir string, port int, path string, s Spec) (*Proc, error) {
	bin, err := Binary(s.Engine, s.Sentinel)
	if err != nil {
		return nil, err
	}
	p := &Proc{Port: port, Dir: dir, Conf: path, Spec: s, name: filepath.Base(bin), out: &syncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(bin, path)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	// Never outlive the test binary.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	if err := p.waitReady(); err != nil {
		p.Stop()
		return nil, err
	}
	return p, nil
}

// Restart stops p and starts its program again on the same port and file
// (which it may have rewritten), checked for readiness the same way.
func (p *Proc) Restart() (*Proc, error) {
	p.Stop()
	return StartFile(p.Dir, p.Port, p.Conf, p.Spec)
}

func (p *Proc) waitReady() error {
	s := p.Spec
	c := redis.NewClient(&redis.Options{Addr: p.Addr(), Username: s.Username, Password: s.Password, TLSConfig: s.TLS, MaxRetries: -1, DialTimeout: 200 * time.Millisecond, DialerRetries: 1, DisableIdentity: true})
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
			return fmt.Errorf("%s on port %d exited: %s", p.name, p.Port, p.Output())
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s on port %d not ready: %v; output: %s", p.name, p.Port, err, p.Output())
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
		t.Logf("%s on port %d printed:\n%s", p.name, p.Port, p.Output())
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
