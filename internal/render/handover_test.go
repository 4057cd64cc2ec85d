//go:build linux

package render

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/incusops/redis-sentinel-operator/internal/acl"
	"github.com/incusops/redis-sentinel-operator/internal/engine"
	"github.com/incusops/redis-sentinel-operator/internal/testredis"
)

func TestHandoverGateRefusesBadInput(t *testing.T) {
	good := HandoverGate{Engine: engine.MustOf(engine.Redis), Address: "10.0.0.5", Port: 6379, User: acl.MonitoringUser, Bound: 15 * time.Second}
	cases := map[string]func(*HandoverGate){
		"address not an IP": func(g *HandoverGate) { g.Address = "10.0.0.5; reboot" },
		"port out of range": func(g *HandoverGate) { g.Port = 70000 },
		"user with a space": func(g *HandoverGate) { g.User = "a b" },
		"bound under 1s":    func(g *HandoverGate) { g.Bound = time.Millisecond },
	}
	if _, _, err := good.Files(); err != nil {
		t.Fatalf("valid gate refused: %v", err)
	}
	for name, mutate := range cases {
		g := good
		mutate(&g)
		if _, _, err := g.Files(); err == nil {
			t.Errorf("%s: rendered without error", name)
		}
	}
}

// TestHandoverGate runs the rendered gate against a real server of each
// engine, as redis-server's ExecStop would: it waits while the server is
// the master and lets the stop go on once it is a replica; a replica, a
// wrong password or a server that is down let it go on at once.
func TestHandoverGate(t *testing.T) { testredis.ForEach(t, testHandoverGate) }

func testHandoverGate(t *testing.T, e engine.Engine) {
	creds := realCreds()
	dir := t.TempDir()
	port := freePort(t)
	conf, err := RedisConf(Redis{Address: "127.0.0.1", Port: port, Users: acl.ServerUsers(creds, acl.Backend{Name: acl.DefaultBackendUser, Rules: acl.DefaultBackendRules}),
		MasterUser: acl.ReplicationUser, MasterAuth: creds[acl.Replication].Current, Maxmemory: "16mb", MaxmemoryPolicy: "noeviction", AppendFsync: "everysec", Engine: e})
	if err != nil {
		t.Fatal(err)
	}
	startACL(t, e, dir, port, conf, acl.AdminUser, creds[acl.Admin].Current, false)
	admin := redis.NewClient(&redis.Options{Addr: "127.0.0.1:" + strconv.Itoa(port), Username: acl.AdminUser, Password: creds[acl.Admin].Current, DisableIdentity: true})
	t.Cleanup(func() { _ = admin.Close() })
	ctx := context.Background()

	// The gate reads the monitoring password where Sentinel keeps it; the
	// operator's rendered file quotes it, Sentinel's rewrite does not.
	sentinelConf := filepath.Join(dir, "sentinel.conf")
	gateFor := func(password string, quoted bool) string {
		line := "sentinel auth-pass mymaster " + password
		if quoted {
			line = `sentinel auth-pass "mymaster" "` + password + `"`
		}
		if err := os.WriteFile(sentinelConf, []byte("port 26379\nsentinel auth-user mymaster "+acl.MonitoringUser+"\n"+line+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		local := e
		local.SentinelConf = sentinelConf
		script, dropIn, err := HandoverGate{Engine: local, Address: "127.0.0.1", Port: port, User: acl.MonitoringUser, Bound: 5 * time.Second}.Files()
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(dropIn), "\nExecStop=+"+GateScript+"\n") || strings.Contains(string(dropIn), "TimeoutStopSec") {
			t.Fatalf("drop-in does not run the gate:\n%s", dropIn)
		}
		path := filepath.Join(dir, "gate")
		if err := os.WriteFile(path, script, 0o755); err != nil {
			t.Fatal(err)
		}
		return path
	}
	run := func(path string) chan error {
		done := make(chan error, 1)
		cmd := exec.Command("sh", path)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { done <- cmd.Wait() }()
		return done
	}
	within := func(done chan error, d time.Duration, what string) {
		t.Helper()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("%s: the gate failed: %v", what, err)
			}
		case <-time.After(d):
			t.Fatalf("%s: the gate still waits after %s", what, d)
		}
	}

	t.Run("master until it is a replica", func(t *testing.T) {
		done := run(gateFor(creds[acl.Monitoring].Current, true))
		select {
		case err := <-done:
			t.Fatalf("the gate let a master stop at once (%v)", err)
		case <-time.After(time.Second):
		}
		// A replica of a master that does not exist: ROLE says slave.
		if err := admin.SlaveOf(ctx, "127.0.0.1", "1").Err(); err != nil {
			t.Fatal(err)
		}
		// It settles first, answering as a replica.
		select {
		case err := <-done:
			t.Fatalf("the gate let a handed-over master stop without settling (%v)", err)
		case <-time.After(GateSettle - 500*time.Millisecond):
		}
		within(done, 2*time.Second, "once the server is a replica and settled")
	})
	t.Run("replica at once", func(t *testing.T) {
		done := run(gateFor(creds[acl.Monitoring].Current, false))
		within(done, time.Second, "a replica")
	})
	if err := admin.SlaveOf(ctx, "NO", "ONE").Err(); err != nil {
		t.Fatal(err)
	}
	t.Run("wrong password at once", func(t *testing.T) {
		done := run(gateFor("not-the-password", false))
		within(done, 3*time.Second, "a refused password")
	})
	t.Run("server down at once", func(t *testing.T) {
		_ = admin.Shutdown(ctx).Err() // answers with a closed connection
		if admin.Ping(ctx).Err() == nil {
			t.Fatal("the server still answers after SHUTDOWN")
		}
		done := run(gateFor(creds[acl.Monitoring].Current, false))
		within(done, 3*time.Second, "a server that is down")
	})
}
