//go:build linux

package render

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/incusops/redis-sentinel-operator/internal/testredis"
)

// aclProc is a redis-server or redis-sentinel started on a rendered file.
// It is testredis.Proc for servers without a usable default user:
// testredis waits for readiness with AUTH <password>, which logs in as the
// default user, and the rendered files disable it. This waits with
// AUTH <user> <password> instead.
type aclProc struct {
	Port int
	Dir  string
	Conf string // the config file, which Redis rewrites
	cmd  *exec.Cmd
	out  *lockedBuffer
	done chan struct{}
	once sync.Once
}

// startACL writes conf, localized to dir, and runs it on port until t ends
// (as Sentinel when sentinel is set), ready once user can PING.
func startACL(t *testing.T, dir string, port int, conf []byte, user, password string, sentinel bool) *aclProc {
	t.Helper()
	path := filepath.Join(dir, fmt.Sprintf("redis-%d.conf", port))
	if err := os.WriteFile(path, localize(t, conf, dir), 0o600); err != nil {
		t.Fatal(err)
	}
	return startACLFile(t, dir, port, path, user, password, sentinel)
}

// startACLFile runs an existing config file, e.g. one Redis rewrote.
func startACLFile(t *testing.T, dir string, port int, path, user, password string, sentinel bool) *aclProc {
	t.Helper()
	bin, err := testredis.Binary()
	if err != nil {
		t.Fatal(err)
	}
	args := []string{path}
	if sentinel {
		args = append(args, "--sentinel")
	}
	p := &aclProc{Port: port, Dir: dir, Conf: path, out: &lockedBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	logfile := filepath.Join(dir, "redis.log")
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			b, _ := os.ReadFile(logfile)
			t.Logf("port %d printed:\n%s\n%s:\n%s", port, p.out.String(), logfile, b)
		}
	})
	if err := p.waitReady(user, password); err != nil {
		b, _ := os.ReadFile(logfile)
		t.Fatalf("%v\n%s:\n%s", err, logfile, b)
	}
	return p
}

func (p *aclProc) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(p.Port)) }

func (p *aclProc) waitReady(user, password string) error {
	c := redis.NewClient(&redis.Options{Addr: p.Addr(), Username: user, Password: password, MaxRetries: -1,
		DialTimeout: 200 * time.Millisecond, DialerRetries: 1, DisableIdentity: true})
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
			return fmt.Errorf("redis-server on port %d exited: %s", p.Port, p.out.String())
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("redis-server on port %d not ready for user %s: %v; output: %s", p.Port, user, err, p.out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop terminates the process (SIGTERM, SIGKILL after 5 s) and waits.
func (p *aclProc) Stop() {
	p.once.Do(func() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
}

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// respConn is one raw RESP2 connection, so a test can tell for certain
// whether the server closed it: go-redis would redial (and resubscribe)
// silently.
type respConn struct {
	c net.Conn
	r *bufio.Reader
}

func dialRESP(t *testing.T, port int) *respConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return &respConn{c: c, r: bufio.NewReader(c)}
}

// send writes one command.
func (rc *respConn) send(args ...string) error {
	var b bytes.Buffer
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	_ = rc.c.SetWriteDeadline(time.Now().Add(2 * time.Second))
	_, err := rc.c.Write(b.Bytes())
	return err
}

// read reads one reply within timeout, flattened: a simple string, error
// ("-ERR ..."), integer or bulk string is one element, an array its
// elements in order.
func (rc *respConn) read(timeout time.Duration) ([]string, error) {
	_ = rc.c.SetReadDeadline(time.Now().Add(timeout))
	return rc.readValue()
}

func (rc *respConn) readValue() ([]string, error) {
	line, err := rc.r.ReadString('\n')
	if err != nil {
		return nil, err
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return nil, fmt.Errorf("empty RESP line")
	}
	switch line[0] {
	case '+', ':':
		return []string{line[1:]}, nil
	case '-':
		return []string{line}, nil
	case '$':
		n, _ := strconv.Atoi(line[1:])
		if n < 0 {
			return []string{""}, nil
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(rc.r, buf); err != nil {
			return nil, err
		}
		return []string{string(buf[:n])}, nil
	case '*':
		n, _ := strconv.Atoi(line[1:])
		var out []string
		for range n {
			v, err := rc.readValue()
			if err != nil {
				return nil, err
			}
			out = append(out, v...)
		}
		return out, nil
	}
	return nil, fmt.Errorf("unexpected RESP line %q", line)
}

// do sends a command and reads its reply.
func (rc *respConn) do(args ...string) ([]string, error) {
	if err := rc.send(args...); err != nil {
		return nil, err
	}
	return rc.read(5 * time.Second)
}
