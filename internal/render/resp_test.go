//go:build linux

package render

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

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
