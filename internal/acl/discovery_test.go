package acl_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/incusops/redis-sentinel-operator/internal/acl"
	"github.com/incusops/redis-sentinel-operator/internal/config"
	"github.com/incusops/redis-sentinel-operator/internal/engine"
	"github.com/incusops/redis-sentinel-operator/internal/redisclient"
	"github.com/incusops/redis-sentinel-operator/internal/testenv"
	"github.com/incusops/redis-sentinel-operator/internal/testredis"
)

// TestDiscoveryClients runs, for each engine (Redis 7 and Valkey 8, in
// parallel), two real servers (master and replica) and three real
// sentinels on loopback with the users acl.ServerUsers and
// acl.SentinelUsers give them, the backend user holding exactly
// acl.DiscoveryRules on the sentinels. Every sentinel sits behind a
// recording proxy, and announces the proxy's port, so every connection to a
// sentinel (clients' and the other sentinels') passes through one; the proxy
// parses the RESP commands and notes them per connection with the user the
// connection authenticated as.
//
// Then each supported client library, in turn, discovers the master as the
// backend user, writes and reads, and follows a SENTINEL FAILOVER that the
// admin user starts. The test asserts that
//   - each client finds the new master (go-redis through the +switch-master
//     message, before the old master is even demoted);
//   - no sentinel and no server logged an ACL denial, for any user;
//   - what each client sent the sentinels, as the backend user, is exactly
//     its entry in acl.DiscoveryClients (so a client upgrade that sends
//     something new fails here, loudly);
//   - the backend user is refused everything else worth refusing.
func TestDiscoveryClients(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 5 real servers per engine and waits out 2 failovers (~1 min)")
	}
	python, err := exec.LookPath("/usr/bin/python3")
	var pyVersion []byte
	if err == nil {
		pyVersion, err = exec.Command(python, "-c", "import redis.sentinel; print(redis.__version__)").Output()
	}
	if err != nil {
		testenv.Unavailable(t, "python3-redis", err)
	}
	// The recorded lists are per version: an upgrade must record again.
	versions := map[string]string{
		"go-redis ": "go-redis v" + redis.Version() + " ",
		"redis-py ": "redis-py " + strings.TrimSpace(string(pyVersion)) + " ",
	}
	for _, dc := range acl.DiscoveryClients {
		for lib, v := range versions {
			if strings.HasPrefix(dc.Name, lib) && !strings.HasPrefix(dc.Name, v) {
				t.Fatalf("acl.DiscoveryClients has %q, the library here is %s: run this test, update DiscoveryClients (and DiscoveryRules)", dc.Name, v)
			}
		}
	}

	testredis.ForEach(t, func(t *testing.T, e engine.Engine) { discoveryClients(t, e, python) })
}

// discoveryClients is TestDiscoveryClients on engine e.
func discoveryClients(t *testing.T, e engine.Engine, python string) {
	f := startFormation(t, e)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	t.Run("go-redis FailoverClient", func(t *testing.T) { f.goRedisMaster(ctx, t) })
	t.Run("go-redis FailoverClient, ReplicaOnly", func(t *testing.T) { f.goRedisReplica(ctx, t) })
	t.Run("redis-py Sentinel", func(t *testing.T) { f.redisPy(ctx, t, python) })

	t.Run("no ACL denials", func(t *testing.T) {
		for _, p := range f.sentinels {
			f.noDenials(ctx, t, p.Addr())
		}
		for _, p := range f.servers {
			f.noDenials(ctx, t, p.Addr())
		}
	})

	t.Run("commands sent equal the documented ones", func(t *testing.T) {
		for _, dc := range acl.DiscoveryClients {
			got := f.rec.sent(dc.Name, acl.DefaultBackendUser)
			if got.conns == 0 {
				t.Errorf("%s: no connection of %s recorded", dc.Name, acl.DefaultBackendUser)
				continue
			}
			if want := sortedSet(dc.Commands); !slices.Equal(got.commands, want) {
				t.Errorf("%s sent the sentinels\n  %q\nacl.DiscoveryClients documents\n  %q\n(update DiscoveryClients, and DiscoveryRules if a command must be allowed)", dc.Name, got.commands, want)
			}
			if want := sortedSet(dc.Channels); !slices.Equal(got.channels, want) {
				t.Errorf("%s subscribed to %q, acl.DiscoveryClients documents %q", dc.Name, got.channels, want)
			}
			t.Logf("%s: %d connections to sentinels, commands %q, channels %q", dc.Name, got.conns, got.commands, got.channels)
		}
		// The sentinels talk to each other through the proxies too.
		peers := f.rec.sentBy(acl.PeerUser)
		t.Logf("%s: %d connections between sentinels, commands %q, channels %q", acl.PeerUser, peers.conns, peers.commands, peers.channels)
		if u := f.rec.sentBy(""); len(u.commands) > 0 {
			// Before a connection authenticates it may only say who it is.
			for _, c := range u.commands {
				if c != "hello" && c != "auth" {
					t.Errorf("unauthenticated connections sent %q", u.commands)
					break
				}
			}
		}
	})

	t.Run("backend refused", func(t *testing.T) { f.refusals(ctx, t) })
}

// Commands a client sends that no ACL rule is about: AUTH and HELLO carry
// the no-auth flag (ACL never checks them); CLIENT SETINFO is unknown to
// Redis 7.0, which answers "unknown subcommand" before any ACL check, and
// whose ACL SETUSER refuses a rule for it (engine.Engine.ClientSetInfo).
func notInRules(e engine.Engine, command string) bool {
	return command == "auth" || command == "hello" || (command == "client|setinfo" && !e.ClientSetInfo)
}

// TestDiscoveryRulesAreWhatClientsSend: on each engine's sentinels,
// DiscoveryRulesOf allow every command and channel a DiscoveryClient
// sends, and nothing no client sends.
func TestDiscoveryRulesAreWhatClientsSend(t *testing.T) {
	for _, c := range acl.DiscoveryClients {
		if !slices.IsSorted(c.Commands) || !slices.IsSorted(c.Channels) {
			t.Errorf("%s: lists not sorted", c.Name)
		}
	}
	for _, n := range testredis.Engines {
		e := engine.MustOf(n)
		var wantCmds, wantChans []string
		for _, c := range acl.DiscoveryClients {
			for _, cmd := range c.Commands {
				if !notInRules(e, cmd) {
					wantCmds = append(wantCmds, cmd)
				}
			}
			wantChans = append(wantChans, c.Channels...)
		}
		var cmds, chans []string
		for i, r := range acl.DiscoveryRulesOf(e) {
			switch {
			case i == 0:
				if r != "-@all" {
					t.Errorf("%s: DiscoveryRulesOf start with %q, want -@all", n, r)
				}
			case strings.HasPrefix(r, "+"):
				cmds = append(cmds, r[1:])
			case strings.HasPrefix(r, "&"):
				chans = append(chans, r[1:])
			default:
				t.Errorf("%s: DiscoveryRulesOf: unexpected rule %q (only +command and &channel)", n, r)
			}
		}
		if got, want := sortedSet(cmds), sortedSet(wantCmds); !slices.Equal(got, want) {
			t.Errorf("%s: DiscoveryRulesOf allow commands %q, the clients send %q", n, got, want)
		}
		if got, want := sortedSet(chans), sortedSet(wantChans); !slices.Equal(got, want) {
			t.Errorf("%s: DiscoveryRulesOf allow channels %q, the clients subscribe to %q", n, got, want)
		}
		if !slices.Contains(cmds, "subscribe") && len(chans) > 0 {
			t.Errorf("%s: channels without +subscribe", n)
		}
	}
}

const masterName = "rsf-discovery"

// formation is the servers, the sentinels and their proxies.
type formation struct {
	engine    engine.Engine
	creds     acl.Set
	servers   []*testredis.Proc // [0] starts as master
	sentinels []*testredis.Proc
	proxies   []*proxy
	rec       *recorder
}

func startFormation(t *testing.T, e engine.Engine) *formation {
	t.Helper()
	f := &formation{
		engine: e,
		creds: acl.Set{
			acl.BackendPassword:         {Current: "backend-data-Pa55"},
			acl.BackendSentinelPassword: {Current: "backend-sentinel-Pa55"},
			acl.Admin:                   {Current: "admin-Pa55"},
			acl.Replication:             {Current: "replication-Pa55"},
			acl.Monitoring:              {Current: "monitoring-Pa55"},
			acl.Peer:                    {Current: "peer-Pa55"},
		},
		rec: &recorder{},
	}
	backend := acl.Backend{Name: acl.DefaultBackendUser, Rules: acl.DefaultBackendRules}
	serverUsers := userLines(acl.ServerUsers(f.creds, backend))
	sentinelUsers := userLines(acl.SentinelUsers(f.creds, backend, e))
	admin := f.creds[acl.Admin].Current

	for i := range 2 {
		dir := filepath.Join(t.TempDir(), fmt.Sprintf("redis-%d", i))
		p := startRetry(t, func(port int) (*testredis.Proc, error) {
			// No 5 s wait before a full sync, as the operator renders it.
			conf := fmt.Sprintf("port %d\nbind 127.0.0.1\nsave \"\"\nappendonly no\ndir %s\nlogfile \"\"\nrepl-diskless-sync-delay 0\n"+
				"masteruser %s\nmasterauth %s\n%s", port, dir, acl.ReplicationUser, f.creds[acl.Replication].Current, serverUsers)
			if i > 0 {
				conf += fmt.Sprintf("replicaof 127.0.0.1 %d\n", f.servers[0].Port)
			}
			return testredis.Start(dir, port, []byte(conf), testredis.Spec{Engine: e.Name, Username: acl.AdminUser, Password: admin})
		})
		f.servers = append(f.servers, p)
	}

	for i := range 3 {
		px := newProxy(t, f.rec)
		f.proxies = append(f.proxies, px)
		dir := filepath.Join(t.TempDir(), fmt.Sprintf("sentinel-%d", i))
		p := startRetry(t, func(port int) (*testredis.Proc, error) {
			px.setTarget(port)
			m := masterName
			conf := fmt.Sprintf("port %d\nbind 127.0.0.1\ndaemonize no\ndir %s\nlogfile \"\"\n", port, dir) + sentinelUsers +
				fmt.Sprintf("sentinel sentinel-user %s\nsentinel sentinel-pass %s\n", acl.PeerUser, f.creds[acl.Peer].Current) +
				fmt.Sprintf("sentinel announce-ip 127.0.0.1\nsentinel announce-port %d\n", px.port()) +
				fmt.Sprintf("sentinel monitor %s 127.0.0.1 %d 2\n", m, f.servers[0].Port) +
				fmt.Sprintf("sentinel auth-user %s %s\nsentinel auth-pass %s %s\n", m, acl.MonitoringUser, m, f.creds[acl.Monitoring].Current) +
				fmt.Sprintf("sentinel down-after-milliseconds %s 5000\nsentinel failover-timeout %s 10000\n", m, m)
			return testredis.Start(dir, port, []byte(conf), testredis.Spec{Engine: e.Name, Sentinel: true, Username: acl.AdminUser, Password: admin})
		})
		f.sentinels = append(f.sentinels, p)
	}

	// Every sentinel knows the other two and a healthy replica.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	f.waitTopology(ctx, t, 0)
	return f
}

// userLines renders users as config-file directives: "user <ACL SETUSER args>".
func userLines(users []acl.User) string {
	var b strings.Builder
	for _, u := range users {
		b.WriteString("user " + strings.Join(u.SetUserArgs(), " ") + "\n")
	}
	return b.String()
}

// startRetry starts a process on a free port, three tries in case another
// process takes the port first.
func startRetry(t *testing.T, start func(port int) (*testredis.Proc, error)) *testredis.Proc {
	t.Helper()
	var err error
	for range 3 {
		var port int
		if port, err = testenv.FreePort(); err != nil {
			t.Fatal(err)
		}
		var p *testredis.Proc
		if p, err = start(port); err == nil {
			p.StopAtCleanup(t)
			return p
		}
	}
	t.Fatalf("three starts failed, the last: %v", err)
	return nil
}

// admin is a connection to addr as the operator's admin user.
func (f *formation) admin(addr string) *redis.Client {
	return redis.NewClient(&redis.Options{
		Addr: addr, Username: acl.AdminUser, Password: f.creds[acl.Admin].Current,
		DisableIdentity: true, MaxRetries: -1,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	})
}

// waitTopology waits until every sentinel names servers[master] as the
// master, knows the two other sentinels, and sees the other server as a
// replica with a working link, which that server confirms.
func (f *formation) waitTopology(ctx context.Context, t *testing.T, master int) {
	t.Helper()
	want := f.servers[master]
	replica := f.servers[1-master]
	var last string
	for {
		last = f.topologyProblem(ctx, want, replica)
		if last == "" {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("topology not settled with master on port %d: %s", want.Port, last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (f *formation) topologyProblem(ctx context.Context, master, replica *testredis.Proc) string {
	for _, s := range f.sentinels {
		sc := redis.NewSentinelClient(&redis.Options{Addr: s.Addr(), Username: acl.AdminUser, Password: f.creds[acl.Admin].Current, DisableIdentity: true})
		defer sc.Close()
		addr, err := sc.GetMasterAddrByName(ctx, masterName).Result()
		if err != nil || len(addr) != 2 || addr[1] != strconv.Itoa(master.Port) {
			return fmt.Sprintf("sentinel %d names %v (%v)", s.Port, addr, err)
		}
		peers, err := sc.Sentinels(ctx, masterName).Result()
		if err != nil || len(peers) != 2 {
			return fmt.Sprintf("sentinel %d knows %d peers (%v)", s.Port, len(peers), err)
		}
		reps, err := sc.Replicas(ctx, masterName).Result()
		if err != nil {
			return fmt.Sprintf("sentinel %d replicas: %v", s.Port, err)
		}
		ok := false
		for _, r := range reps {
			if r["port"] == strconv.Itoa(replica.Port) && r["flags"] == "slave" && r["master-link-status"] == "ok" {
				ok = true
			}
		}
		if !ok {
			return fmt.Sprintf("sentinel %d sees replicas %v", s.Port, reps)
		}
	}
	rc := f.admin(replica.Addr())
	defer rc.Close()
	info, err := rc.Info(ctx, "replication").Result()
	if err != nil || !strings.Contains(info, "role:slave") || !strings.Contains(info, fmt.Sprintf("master_port:%d", master.Port)) ||
		!strings.Contains(info, "master_link_status:up") {
		return fmt.Sprintf("replica on port %d: %v", replica.Port, err)
	}
	return ""
}

// failover makes the first sentinel fail servers[from] over to
// servers[1-from] as the admin user and waits until every sentinel names
// the new master.
func (f *formation) failover(ctx context.Context, t *testing.T, from int) {
	t.Helper()
	c := f.admin(f.sentinels[0].Addr())
	defer c.Close()
	if err := c.Do(ctx, "SENTINEL", "FAILOVER", masterName).Err(); err != nil {
		t.Fatalf("SENTINEL FAILOVER as %s: %v", acl.AdminUser, err)
	}
	to := f.servers[1-from]
	for {
		done := true
		for _, s := range f.sentinels {
			sc := redis.NewSentinelClient(&redis.Options{Addr: s.Addr(), Username: acl.AdminUser, Password: f.creds[acl.Admin].Current, DisableIdentity: true})
			addr, err := sc.GetMasterAddrByName(ctx, masterName).Result()
			sc.Close()
			if err != nil || len(addr) != 2 || addr[1] != strconv.Itoa(to.Port) {
				done = false
			}
		}
		if done {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("sentinels did not switch to port %d", to.Port)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// role is what ROLE's first element says about server i.
func (f *formation) role(ctx context.Context, i int) string {
	c := f.admin(f.servers[i].Addr())
	defer c.Close()
	r, err := c.Do(ctx, "ROLE").Slice()
	if err != nil || len(r) == 0 {
		return fmt.Sprintf("error: %v", err)
	}
	s, _ := r[0].(string)
	return s
}

// valueOn reads key on server i as the admin user.
func (f *formation) valueOn(ctx context.Context, i int, key string) string {
	c := f.admin(f.servers[i].Addr())
	defer c.Close()
	v, _ := c.Get(ctx, key).Result()
	return v
}

// connectionSecret is what the operator hands backends.
func (f *formation) connectionSecret() map[string][]byte {
	addrs := make([]string, len(f.proxies))
	for i, p := range f.proxies {
		addrs[i] = p.addr()
	}
	return map[string][]byte{
		config.EnvSentinelAddrs:    []byte(strings.Join(addrs, ",")),
		config.EnvMasterName:       []byte(masterName),
		config.EnvSentinelUsername: []byte(acl.DefaultBackendUser),
		config.EnvSentinelPassword: []byte(f.creds[acl.BackendSentinelPassword].Current),
		config.EnvURL:              []byte("redis://" + acl.DefaultBackendUser + ":" + f.creds[acl.BackendPassword].Current + "@unused:6379/0"),
	}
}

// goRedisMaster: the backends' client (internal/redisclient, a go-redis
// FailoverClient) writes, idles past its pub/sub health check, and follows
// a failover from servers[0] to servers[1].
func (f *formation) goRedisMaster(ctx context.Context, t *testing.T) {
	f.rec.setPhase(acl.DiscoveryClients[0].Name)
	defer f.rec.setPhase("")
	c, err := redisclient.FromSecretData(f.connectionSecret(), redisclient.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Set(ctx, "go:k", "v0", 0).Err(); err != nil {
		t.Fatalf("SET through discovery: %v", err)
	}
	if v, err := c.Get(ctx, "go:k").Result(); err != nil || v != "v0" {
		t.Fatalf("GET through discovery = %q, %v", v, err)
	}
	// go-redis PINGs its +switch-master subscription after 3 s of silence.
	time.Sleep(4500 * time.Millisecond)

	f.failover(ctx, t, 0)
	// The old master stays a master until the sentinels demote it (8 s
	// later at the earliest): a write that lands on the new one before
	// that came through +switch-master, not through a dropped connection.
	deadline := time.Now().Add(20 * time.Second)
	for i := 1; ; i++ {
		v := "v" + strconv.Itoa(i)
		err := c.Set(ctx, "go:k", v, 0).Err()
		if err == nil && f.valueOn(ctx, 1, "go:k") == v {
			if r := f.role(ctx, 0); r != "master" {
				t.Logf("note: the old master was already %q when the write landed on the new one", r)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("go-redis never wrote to the new master (last error %v)", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Wait for the old master to be a healthy replica before the next step.
	f.waitTopology(ctx, t, 1)
}

// goRedisReplica: a go-redis FailoverClient that reads from replicas.
func (f *formation) goRedisReplica(ctx context.Context, t *testing.T) {
	f.rec.setPhase(acl.DiscoveryClients[1].Name)
	defer f.rec.setPhase("")
	addrs := make([]string, len(f.proxies))
	for i, p := range f.proxies {
		addrs[i] = p.addr()
	}
	c := redis.NewFailoverClient(&redis.FailoverOptions{
		MasterName: masterName, SentinelAddrs: addrs,
		SentinelUsername: acl.DefaultBackendUser, SentinelPassword: f.creds[acl.BackendSentinelPassword].Current,
		Username: acl.DefaultBackendUser, Password: f.creds[acl.BackendPassword].Current,
		ReplicaOnly: true,
	})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		// The replica is servers[0] now; it has go:k from the last step.
		v, err := c.Get(ctx, "go:k").Result()
		if err == nil && v != "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET from a replica through discovery: %q, %v", v, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Past the pub/sub health check, as a long-lived client would be.
	time.Sleep(4500 * time.Millisecond)
}

// redisPyScript is a backend using redis-py's Sentinel: it discovers the
// master and the replicas, writes and reads, says "ready", then keeps
// writing until its pool's master is the address it reads on stdin.
const redisPyScript = `
import json, os, sys, time
from redis.sentinel import Sentinel
from redis.exceptions import ConnectionError, TimeoutError

env = os.environ
name, user = env["MASTER"], env["USER_NAME"]
sentinels = [(a.rsplit(":", 1)[0], int(a.rsplit(":", 1)[1])) for a in env["SENTINELS"].split(",")]
s = Sentinel(sentinels, sentinel_kwargs={"username": user, "password": env["SENTINEL_PASSWORD"],
                                         "socket_timeout": 2, "client_name": "discovery-test"})
m = s.master_for(name, username=user, password=env["DATA_PASSWORD"], socket_timeout=2)

def say(**kw):
    print(json.dumps(kw), flush=True)

def addr(a):
    return "%s:%s" % a

m.set("py:k", "v0")
say(event="ready", master=addr(s.discover_master(name)),
    replicas=[addr(a) for a in s.discover_slaves(name)], get=m.get("py:k").decode())
want = sys.stdin.readline().strip()
deadline = time.time() + 60
i = 0
while time.time() < deadline:
    i += 1
    try:
        m.set("py:k", "v%d" % i)
    except (ConnectionError, TimeoutError):
        time.sleep(0.05)
        continue
    a = m.connection_pool.master_address
    if a and addr(a) == want:
        say(event="switched", value="v%d" % i, master=addr(s.discover_master(name)),
            replicas=[addr(a) for a in s.discover_slaves(name)])
        sys.exit(0)
    time.sleep(0.05)
say(event="timeout")
sys.exit(1)
`

type pyEvent struct {
	Event    string   `json:"event"`
	Master   string   `json:"master"`
	Replicas []string `json:"replicas"`
	Get      string   `json:"get"`
	Value    string   `json:"value"`
}

// redisPy: redis-py's Sentinel (master_for, discover_master,
// discover_slaves) writes and follows a failover from servers[1] back to
// servers[0].
func (f *formation) redisPy(ctx context.Context, t *testing.T, python string) {
	f.rec.setPhase(acl.DiscoveryClients[2].Name)
	defer f.rec.setPhase("")
	addrs := make([]string, len(f.proxies))
	for i, p := range f.proxies {
		addrs[i] = p.addr()
	}
	cmd := exec.CommandContext(ctx, python, "-c", redisPyScript)
	cmd.Env = append(os.Environ(), "MASTER="+masterName, "USER_NAME="+acl.DefaultBackendUser,
		"SENTINELS="+strings.Join(addrs, ","),
		"SENTINEL_PASSWORD="+f.creds[acl.BackendSentinelPassword].Current,
		"DATA_PASSWORD="+f.creds[acl.BackendPassword].Current)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	lines := bufio.NewScanner(stdout)
	next := func() pyEvent {
		t.Helper()
		if !lines.Scan() {
			t.Fatalf("redis-py script ended: %v\n%s", lines.Err(), stderr.String())
		}
		var e pyEvent
		if err := json.Unmarshal(lines.Bytes(), &e); err != nil {
			t.Fatalf("redis-py script said %q: %v", lines.Text(), err)
		}
		return e
	}

	e := next()
	if e.Event != "ready" || e.Master != f.servers[1].Addr() || e.Get != "v0" ||
		!slices.Equal(e.Replicas, []string{f.servers[0].Addr()}) {
		t.Fatalf("redis-py: %+v, want ready with master %s and replica %s", e, f.servers[1].Addr(), f.servers[0].Addr())
	}
	f.failover(ctx, t, 1)
	if _, err := io.WriteString(stdin, f.servers[0].Addr()+"\n"); err != nil {
		t.Fatal(err)
	}
	e = next()
	if e.Event != "switched" || e.Master != f.servers[0].Addr() {
		t.Fatalf("redis-py: %+v, want switched to %s\n%s", e, f.servers[0].Addr(), stderr.String())
	}
	if got := f.valueOn(ctx, 0, "py:k"); got != e.Value {
		t.Fatalf("the new master holds py:k=%q, redis-py wrote %q", got, e.Value)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("redis-py script: %v\n%s", err, stderr.String())
	}
	f.waitTopology(ctx, t, 0)
}

// noDenials fails if addr's ACL LOG holds any entry.
func (f *formation) noDenials(ctx context.Context, t *testing.T, addr string) {
	t.Helper()
	c := f.admin(addr)
	defer c.Close()
	entries, err := c.Do(ctx, "ACL", "LOG").Slice()
	if err != nil {
		t.Fatalf("ACL LOG on %s: %v", addr, err)
	}
	for _, e := range entries {
		t.Errorf("ACL LOG on %s: %v", addr, e)
	}
}

// refusals: the backend user on a sentinel, one row per thing it must not
// do, and the things discovery needs still allowed.
func (f *formation) refusals(ctx context.Context, t *testing.T) {
	s := f.sentinels[0]
	port := strconv.Itoa(f.servers[0].Port)
	const noperm = "NOPERM"
	rows := []struct {
		args []any
		want string // a substring of the error; "" means allowed
	}{
		// Allowed: discovery.
		{args: []any{"PING"}},
		{args: []any{"SENTINEL", "GET-MASTER-ADDR-BY-NAME", masterName}},
		{args: []any{"SENTINEL", "SENTINELS", masterName}},
		{args: []any{"SENTINEL", "REPLICAS", masterName}},
		{args: []any{"SENTINEL", "SLAVES", masterName}},
		{args: []any{"SENTINEL", "MASTERS"}},
		// go-redis names its library on every connection; a sentinel
		// that does not know the command says so before any ACL check.
		{args: []any{"CLIENT", "SETINFO", "LIB-NAME", "x"}, want: map[bool]string{true: "", false: "unknown subcommand"}[f.engine.ClientSetInfo]},
		// Changing what the sentinels monitor, or how.
		{args: []any{"SENTINEL", "SET", masterName, "down-after-milliseconds", "1000"}, want: noperm},
		{args: []any{"SENTINEL", "SET", masterName, "auth-pass", "x"}, want: noperm},
		{args: []any{"SENTINEL", "REMOVE", masterName}, want: noperm},
		{args: []any{"SENTINEL", "MONITOR", "evil", "127.0.0.1", port, "1"}, want: noperm},
		{args: []any{"SENTINEL", "FAILOVER", masterName}, want: noperm},
		{args: []any{"SENTINEL", "RESET", "*"}, want: noperm},
		{args: []any{"SENTINEL", "CONFIG", "SET", "resolve-hostnames", "yes"}, want: noperm},
		{args: []any{"SENTINEL", "CONFIG", "GET", "*"}, want: noperm},
		{args: []any{"SENTINEL", "FLUSHCONFIG"}, want: noperm},
		{args: []any{"SENTINEL", "SIMULATE-FAILURE", "crash-after-election"}, want: noperm},
		{args: []any{"SENTINEL", "DEBUG"}, want: noperm},
		// A sentinel's vote belongs to the peer user.
		{args: []any{"SENTINEL", "IS-MASTER-DOWN-BY-ADDR", "127.0.0.1", port, "0", "*"}, want: noperm},
		// What discovery does not need.
		{args: []any{"SENTINEL", "MASTER", masterName}, want: noperm},
		{args: []any{"SENTINEL", "CKQUORUM", masterName}, want: noperm},
		{args: []any{"SENTINEL", "INFO-CACHE", masterName}, want: noperm},
		{args: []any{"SENTINEL", "MYID"}, want: noperm},
		{args: []any{"SENTINEL", "PENDING-SCRIPTS"}, want: noperm},
		{args: []any{"INFO"}, want: noperm},
		{args: []any{"ROLE"}, want: noperm},
		{args: []any{"CLIENT", "LIST"}, want: noperm},
		{args: []any{"CLIENT", "KILL", "TYPE", "normal"}, want: noperm},
		{args: []any{"CLIENT", "PAUSE", "1000"}, want: noperm},
		{args: []any{"COMMAND"}, want: noperm},
		// ACL and the process.
		{args: []any{"ACL", "SETUSER", acl.DefaultBackendUser, "+@all"}, want: noperm},
		{args: []any{"ACL", "SETUSER", acl.DefaultUser, "on", "nopass"}, want: noperm},
		{args: []any{"ACL", "LIST"}, want: noperm},
		{args: []any{"ACL", "WHOAMI"}, want: noperm},
		{args: []any{"SHUTDOWN", "NOSAVE"}, want: noperm},
		// Sentinel has no CONFIG command; SENTINEL CONFIG is above.
		{args: []any{"CONFIG", "SET", "sentinel-pass", "x"}, want: "unknown command"},
		// Forged hello messages or switches, and other channels.
		{args: []any{"PUBLISH", "__sentinel__:hello", "127.0.0.1,1,x,1,m,127.0.0.1," + port + ",1"}, want: noperm},
		{args: []any{"PUBLISH", "+switch-master", masterName + " 127.0.0.1 1 127.0.0.1 2"}, want: noperm},
		{args: []any{"SUBSCRIBE", "__sentinel__:hello"}, want: noperm},
		{args: []any{"SUBSCRIBE", "+sdown"}, want: noperm},
		{args: []any{"PSUBSCRIBE", "*"}, want: noperm},
		{args: []any{"PSUBSCRIBE", "+switch-master"}, want: noperm},
	}
	for _, row := range rows {
		name := strings.ToLower(fmt.Sprint(row.args[0]))
		if len(row.args) > 1 {
			name += " " + strings.ToLower(fmt.Sprint(row.args[1]))
		}
		t.Run(name, func(t *testing.T) {
			// A connection of its own per row: a SUBSCRIBE that went
			// through would leave it in subscriber mode.
			c := redis.NewClient(&redis.Options{
				Addr: s.Addr(), Username: acl.DefaultBackendUser, Password: f.creds[acl.BackendSentinelPassword].Current,
				Protocol: 2, DisableIdentity: true, MaxRetries: -1, PoolSize: 1,
				MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
			})
			defer c.Close()
			err := c.Do(ctx, row.args...).Err()
			if errors.Is(err, redis.Nil) {
				err = nil
			}
			switch {
			case row.want == "" && err != nil:
				t.Errorf("%v: %v, want allowed", row.args, err)
			case row.want != "" && (err == nil || !strings.Contains(err.Error(), row.want)):
				t.Errorf("%v: %v, want an error with %q", row.args, err, row.want)
			}
		})
	}
	// The formation is untouched.
	if e := f.topologyProblem(ctx, f.servers[0], f.servers[1]); e != "" {
		t.Errorf("after the refusals: %s", e)
	}
}

// sortedSet is xs sorted, without duplicates.
func sortedSet(xs []string) []string {
	out := slices.Clone(xs)
	slices.Sort(out)
	return slices.Compact(out)
}

// ---- the recording proxy ----

// recorder notes what every proxied connection sent, with the phase the
// connection was opened in and the user it authenticated as.
type recorder struct {
	mu    sync.Mutex
	phase string
	conns []*connLog
}

type connLog struct {
	phase    string
	user     string
	commands []string
	channels []string
}

func (r *recorder) setPhase(p string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.phase = p
}

func (r *recorder) open() *connLog {
	r.mu.Lock()
	defer r.mu.Unlock()
	l := &connLog{phase: r.phase}
	r.conns = append(r.conns, l)
	return l
}

// containers are the commands whose first argument is a subcommand with
// an ACL name of its own (sentinel|masters, client|setname, ...).
var containers = map[string]bool{
	"sentinel": true, "client": true, "config": true, "acl": true, "command": true, "cluster": true,
	"object": true, "memory": true, "script": true, "function": true, "pubsub": true, "module": true,
	"slowlog": true, "latency": true, "xinfo": true, "xgroup": true,
}

// note records one command. Arguments are never kept, so no password is.
func (r *recorder) note(l *connLog, args []string) {
	if len(args) == 0 {
		return
	}
	name := strings.ToLower(args[0])
	r.mu.Lock()
	defer r.mu.Unlock()
	switch name {
	case "auth":
		if l.user == "" && len(args) == 3 {
			l.user = args[1]
		} else if l.user == "" && len(args) == 2 {
			l.user = acl.DefaultUser
		}
	case "hello":
		for i := 2; i+1 < len(args); i++ {
			if strings.EqualFold(args[i], "AUTH") && l.user == "" {
				l.user = args[i+1]
			}
		}
	case "subscribe", "psubscribe", "ssubscribe":
		l.channels = append(l.channels, args[1:]...)
	}
	if containers[name] && len(args) > 1 {
		name += "|" + strings.ToLower(args[1])
	}
	l.commands = append(l.commands, name)
}

type sentSummary struct {
	conns              int
	commands, channels []string
}

// sent is what the connections opened in phase and authenticated as user
// sent, as sorted sets.
func (r *recorder) sent(phase, user string) sentSummary {
	r.mu.Lock()
	defer r.mu.Unlock()
	var s sentSummary
	for _, l := range r.conns {
		if l.phase != phase || l.user != user {
			continue
		}
		s.conns++
		s.commands = append(s.commands, l.commands...)
		s.channels = append(s.channels, l.channels...)
	}
	s.commands, s.channels = sortedSet(s.commands), sortedSet(s.channels)
	return s
}

// sentBy is what the connections authenticated as user sent, in any phase.
func (r *recorder) sentBy(user string) sentSummary {
	r.mu.Lock()
	defer r.mu.Unlock()
	var s sentSummary
	for _, l := range r.conns {
		if l.user == user {
			s.conns++
			s.commands = append(s.commands, l.commands...)
			s.channels = append(s.channels, l.channels...)
		}
	}
	s.commands, s.channels = sortedSet(s.commands), sortedSet(s.channels)
	return s
}

// proxy forwards a loopback port to a sentinel and records what clients
// send through it.
type proxy struct {
	ln     net.Listener
	rec    *recorder
	mu     sync.Mutex
	target string
}

func newProxy(t *testing.T, rec *recorder) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, rec: rec}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.serve(c)
		}
	}()
	return p
}

func (p *proxy) port() int    { return p.ln.Addr().(*net.TCPAddr).Port }
func (p *proxy) addr() string { return p.ln.Addr().String() }

func (p *proxy) setTarget(port int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.target = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
}

func (p *proxy) serve(c net.Conn) {
	defer c.Close()
	p.mu.Lock()
	target := p.target
	p.mu.Unlock()
	up, err := net.DialTimeout("tcp", target, time.Second)
	if err != nil {
		return
	}
	defer up.Close()
	l := p.rec.open()
	go func() {
		_, _ = io.Copy(c, up)
		_ = c.Close()
	}()
	// Whatever is read from the client goes on to the sentinel at once;
	// the parser follows behind.
	r := bufio.NewReader(io.TeeReader(c, up))
	for {
		args, err := readCommand(r)
		if err != nil {
			return
		}
		p.rec.note(l, args)
	}
}

// readCommand reads one RESP command: an array of bulk strings, or an
// inline command.
func readCommand(r *bufio.Reader) ([]string, error) {
	line, err := readLine(r)
	if err != nil {
		return nil, err
	}
	if !strings.HasPrefix(line, "*") {
		return strings.Fields(line), nil
	}
	n, err := strconv.Atoi(line[1:])
	if err != nil || n < 0 || n > 1<<16 {
		return nil, fmt.Errorf("bad array header %q", line)
	}
	args := make([]string, 0, n)
	for range n {
		h, err := readLine(r)
		if err != nil {
			return nil, err
		}
		size, err := strconv.Atoi(strings.TrimPrefix(h, "$"))
		if !strings.HasPrefix(h, "$") || err != nil || size < 0 || size > 1<<20 {
			return nil, fmt.Errorf("bad bulk header %q", h)
		}
		buf := make([]byte, size+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return nil, err
		}
		args = append(args, string(buf[:size]))
	}
	return args, nil
}

func readLine(r *bufio.Reader) (string, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	return strings.TrimRight(line, "\r\n"), nil
}
