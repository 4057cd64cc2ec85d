package redisclient

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/incusops/redis-sentinel-operator/internal/engine"
	"github.com/incusops/redis-sentinel-operator/internal/testenv"
	"github.com/incusops/redis-sentinel-operator/internal/testredis"
)

// The tests run real redis-server processes on loopback ports (those of
// the Sentinel mode and TLS also valkey-server and the sentinels of both
// engines). When a server cannot be found or started they are skipped,
// except under CI=true, where that is a failure.

const testPassword = "test-Pa55-word"

// shared is the redis-server started by TestMain for the whole package.
var (
	shared    *testredis.Proc
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
	shared, sharedErr = startServer(filepath.Join(dir, "shared"), testPassword, engine.Redis)
	if sharedErr != nil && testenv.InCI() {
		_ = os.RemoveAll(dir)
		log.Fatalf("CI=true and redis-server could not be started: %v", sharedErr)
	}
	code := m.Run()
	if shared != nil {
		shared.Stop()
	}
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// needRedis returns the shared server, or skips (fails under CI=true).
func needRedis(tb testing.TB) *testredis.Proc {
	tb.Helper()
	if shared == nil {
		testenv.Unavailable(tb, "redis-server", sharedErr)
	}
	return shared
}

// ownRedis is ownServer for the engine-independent client code's tests.
func ownRedis(t *testing.T) *testredis.Proc { return ownServer(t, engine.Redis) }

// ownServer starts a server of engine n of t's own (see startServer),
// stopped when t ends; when n is not installed, t is skipped (failed under
// CI=true).
func ownServer(t *testing.T, n engine.Name) *testredis.Proc {
	t.Helper()
	testredis.Need(t, n)
	p, err := startServer(t.TempDir(), testPassword, n)
	if err != nil {
		t.Fatal(err)
	}
	p.StopAtCleanup(t)
	return p
}

// startServer starts a password-protected, non-persistent server of engine
// n on a free loopback port, working in dir.
func startServer(dir, password string, n engine.Name) (*testredis.Proc, error) {
	return startOnFreePort(dir, testredis.Spec{Engine: n, Password: password}, func(port int) string {
		return fmt.Sprintf(`port %d
bind 127.0.0.1
save ""
appendonly no
requirepass %s
dir %s
daemonize no
protected-mode yes
`, port, password, dir)
	})
}

// startSentinel starts a sentinel of engine n on a free loopback port that
// monitors the master at masterPort as masterName, with quorum 1, its own
// requirepass and the master's auth-pass.
func startSentinel(dir string, n engine.Name, masterPort int, masterName, masterPassword, sentinelPassword string) (*testredis.Proc, error) {
	return startOnFreePort(dir, testredis.Spec{Engine: n, Sentinel: true, Password: sentinelPassword}, func(port int) string {
		return fmt.Sprintf(`port %d
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
	})
}

// startOnFreePort starts conf(port) as spec says on a free port, trying
// three ports in case another process takes one first. With spec.TLS, port
// is conf's tls-port and readiness is checked over TLS.
func startOnFreePort(dir string, spec testredis.Spec, conf func(port int) string) (*testredis.Proc, error) {
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		port, err := testenv.FreePort()
		if err != nil {
			return nil, err
		}
		p, err := testredis.Start(dir, port, []byte(conf(port)), spec)
		if err == nil {
			return p, nil
		}
		lastErr = err
	}
	return nil, lastErr
}
