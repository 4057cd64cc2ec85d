//go:build linux

package render

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/incusops/redis-sentinel-operator/internal/acl"
	"github.com/incusops/redis-sentinel-operator/internal/endpoint"
	"github.com/incusops/redis-sentinel-operator/internal/engine"
	"github.com/incusops/redis-sentinel-operator/internal/testenv"
	"github.com/incusops/redis-sentinel-operator/internal/testredis"
)

// These tests start Debian's real servers and sentinels of every engine
// (Redis 7: apt-get install -y redis-server redis-sentinel; Valkey 8 from
// bookworm-backports: valkey-server valkey-sentinel) on loopback and check
// that what the renderer writes for the engine is what it reads.

func freePort(t *testing.T) int {
	t.Helper()
	port, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// localize replaces only the Debian path directives (dir, logfile, pidfile,
// and the TLS files when the file listens with TLS) so the rendered file
// runs unprivileged in a temp dir, after checking that they are e's paths
// (its server's, or its sentinel's). The TLS files are then dir's
// tls-ca.crt and tls-member.pem. Every other line is kept byte for byte.
func localize(t *testing.T, conf []byte, dir string, e engine.Engine, sentinel bool) []byte {
	t.Helper()
	type path struct{ debian, local string }
	paths := map[string]path{
		"dir":     {e.DataDir, dir},
		"logfile": {e.ServerLog, filepath.Join(dir, "server.log")},
		"pidfile": {e.ServerPid, filepath.Join(dir, "server.pid")},
	}
	if sentinel {
		paths["logfile"] = path{e.SentinelLog, filepath.Join(dir, "server.log")}
		paths["pidfile"] = path{e.SentinelPid, filepath.Join(dir, "server.pid")}
	}
	if bytes.Contains(conf, []byte("\ntls-port ")) {
		paths["tls-ca-cert-file"] = path{e.TLSCAFile, filepath.Join(dir, "tls-ca.crt")}
		paths["tls-cert-file"] = path{e.TLSMemberFile, filepath.Join(dir, "tls-member.pem")}
		paths["tls-key-file"] = path{e.TLSMemberFile, filepath.Join(dir, "tls-member.pem")}
	}
	var out bytes.Buffer
	replaced := 0
	for _, line := range strings.SplitAfter(string(conf), "\n") {
		trimmed := strings.Trim(line, " \t\r\n")
		if trimmed != "" && trimmed[0] != '#' {
			args, ok := SplitArgs(trimmed)
			if ok && len(args) == 2 {
				if p, found := paths[args[0]]; found {
					if args[1] != p.debian {
						t.Fatalf("%s engine: rendered %s %q, want %q", e.Name, args[0], args[1], p.debian)
					}
					line = args[0] + " " + quoteToken(p.local) + "\n"
					replaced++
				}
			}
		}
		out.WriteString(line)
	}
	if replaced != len(paths) {
		t.Fatalf("replaced %d path lines, want %d", replaced, len(paths))
	}
	return out.Bytes()
}

// startACL runs conf, localized to dir, with e's server (its sentinel when
// sentinel is set) on port until t ends, ready once user can PING: the
// rendered files disable the default user.
func startACL(t *testing.T, e engine.Engine, dir string, port int, conf []byte, user, password string, sentinel bool) *testredis.Proc {
	t.Helper()
	return startLocal(t, dir, port, conf, testredis.Spec{Engine: e.Name, Sentinel: sentinel, Username: user, Password: password})
}

// startLocal runs conf, localized to dir, as spec says, until t ends.
func startLocal(t *testing.T, dir string, port int, conf []byte, spec testredis.Spec) *testredis.Proc {
	t.Helper()
	p, err := testredis.Start(dir, port, localize(t, conf, dir, engine.MustOf(spec.Engine), spec.Sentinel), spec)
	return running(t, dir, p, err)
}

// restart starts p again on the file it rewrote.
func restart(t *testing.T, p *testredis.Proc) *testredis.Proc {
	t.Helper()
	again, err := p.Restart()
	return running(t, p.Dir, again, err)
}

// running stops p when t ends and, if t failed, logs its output and the log
// file localize puts in dir.
func running(t *testing.T, dir string, p *testredis.Proc, err error) *testredis.Proc {
	t.Helper()
	logfile := filepath.Join(dir, "server.log")
	if err != nil {
		b, _ := os.ReadFile(logfile)
		t.Fatalf("%v\n%s:\n%s", err, logfile, b)
	}
	p.StopAtCleanup(t, logfile)
	return p
}

// eventually polls f every 100ms until it returns nil or the timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func client(port int, user, password string) *redis.Client {
	return redis.NewClient(&redis.Options{
		Addr:            net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		Username:        user,
		Password:        password,
		DisableIdentity: true,
		MaxRetries:      -1,
		DialTimeout:     2 * time.Second,
	})
}

func sentinelClient(port int, user, password string) *redis.SentinelClient {
	return redis.NewSentinelClient(&redis.Options{
		Addr:            net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		Username:        user,
		Password:        password,
		DisableIdentity: true,
		MaxRetries:      -1,
		DialTimeout:     2 * time.Second,
	})
}

func infoField(info, key string) string {
	sc := bufio.NewScanner(strings.NewReader(info))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), key+":"); ok {
			return v
		}
	}
	return ""
}

// hostilePassword contains quotes, newlines, spaces, backslashes, escape
// look-alikes, control bytes, non-UTF-8 and a would-be directive.
const hostilePassword = "p\"w'\n requirepass x\r\t\\x41\\\x01\x02\x1b\x7f\xff é #;\"\" \\"

// Sentinel writes auth-pass and sentinel-pass back unquoted, so these must
// be bare tokens (see sentinelPassword), but can still carry backslashes,
// '#', '$' and friends.
const (
	monitoringPassword = "p\\a$s#w{o}r|d;x`~!@%^&*()[]<>?,./:=+\\x41"
	peerPassword       = "\\S3nt!nel#;\\\\x41$"
)

// realCreds are distinct passwords for every credential. The users'
// passwords reach the files only as hashes, so any byte goes; masterauth
// (the replication password) is the hostile one.
func realCreds() acl.Set {
	return acl.Set{
		acl.Admin:                   {Current: "admin-" + hostilePassword},
		acl.Replication:             {Current: hostilePassword},
		acl.Monitoring:              {Current: monitoringPassword},
		acl.Peer:                    {Current: peerPassword},
		acl.BackendPassword:         {Current: "backend-" + hostilePassword},
		acl.BackendSentinelPassword: {Current: "backend-sentinel-\x00-" + hostilePassword},
	}
}

// args turns ACL SETUSER arguments into a go-redis command.
func setUser(u acl.User) []any {
	out := []any{"ACL", "SETUSER"}
	for _, a := range u.SetUserArgs() {
		out = append(out, a)
	}
	return out
}

// dryRun asks the server whether user may run a command (ACL DRYRUN, Redis
// 7.0): "OK" or the reason it may not.
func dryRun(ctx context.Context, t *testing.T, admin *redis.Client, user string, command ...string) string {
	t.Helper()
	args := []any{"ACL", "DRYRUN", user}
	for _, c := range command {
		args = append(args, c)
	}
	res, err := admin.Do(ctx, args...).Text()
	if err != nil {
		return err.Error()
	}
	return res
}

// getUser is ACL GETUSER as field -> value; the command rules are sorted
// (Redis describes them in no stable order), the rest as printed.
func getUser(ctx context.Context, t *testing.T, admin *redis.Client, user string) map[string]string {
	t.Helper()
	v, err := admin.Do(ctx, "ACL", "GETUSER", user).Result()
	if err != nil {
		t.Fatal(err)
	}
	m, ok := v.(map[any]any) // RESP3
	if !ok {
		t.Fatalf("ACL GETUSER %s: %T", user, v)
	}
	out := map[string]string{}
	for k, v := range m {
		s := strings.Trim(fmt.Sprint(v), "[]")
		if k == "commands" {
			f := strings.Fields(s)
			slices.Sort(f)
			s = strings.Join(f, " ")
		}
		out[fmt.Sprint(k)] = s
	}
	return out
}

// pubsubClients are the ids of user's subscribed connections (CLIENT LIST).
func pubsubClients(ctx context.Context, t *testing.T, admin *redis.Client, user string) []string {
	t.Helper()
	list, err := admin.Do(ctx, "CLIENT", "LIST", "TYPE", "pubsub").Text()
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, l := range strings.Split(strings.TrimSpace(list), "\n") {
		f := strings.Fields(l)
		if slices.Contains(f, "user="+user) {
			ids = append(ids, f[0])
		}
	}
	return ids
}

// loginRESP opens a raw connection and logs in as user.
func loginRESP(t *testing.T, port int, user, password string) *respConn {
	t.Helper()
	rc := dialRESP(t, port)
	if res, err := rc.do("AUTH", user, password); err != nil || len(res) != 1 || res[0] != "OK" {
		t.Fatalf("AUTH %s: %q %v", user, res, err)
	}
	return rc
}

// subscribe makes rc a subscriber of channel.
func subscribe(t *testing.T, rc *respConn, channel string) {
	t.Helper()
	if res, err := rc.do("SUBSCRIBE", channel); err != nil || len(res) != 3 || res[0] != "subscribe" {
		t.Fatalf("SUBSCRIBE %s: %q %v", channel, res, err)
	}
}

// stillSubscribed publishes a message and checks that rc, on its same
// connection, receives it.
func stillSubscribed(ctx context.Context, t *testing.T, admin *redis.Client, rc *respConn, channel, msg string) {
	t.Helper()
	if err := admin.Publish(ctx, channel, msg).Err(); err != nil {
		t.Fatal(err)
	}
	res, err := rc.read(5 * time.Second)
	if err != nil || !slices.Equal(res, []string{"message", channel, msg}) {
		t.Fatalf("the subscriber did not get %q on its connection: %q %v", msg, res, err)
	}
}

// noClearText fails if file holds pw, raw or as Redis would quote it.
func noClearText(t *testing.T, file []byte, what, pw string) {
	t.Helper()
	q := quoteToken(pw)
	if bytes.Contains(file, []byte(pw)) || bytes.Contains(file, []byte(q[1:len(q)-1])) {
		t.Errorf("%s holds the %s password in clear text", file, what)
	}
}

func TestRealRedisServer(t *testing.T) { testredis.ForEach(t, testRealRedisServer) }

func testRealRedisServer(t *testing.T, e engine.Engine) {
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()

	creds := realCreds()
	backend := acl.Backend{Name: acl.DefaultBackendUser, Rules: acl.DefaultBackendRules}
	users := acl.ServerUsers(creds, backend)
	adminPw, backendPw := creds[acl.Admin].Current, creds[acl.BackendPassword].Current

	masterPort, replicaPort := freePort(t), freePort(t)
	master := Redis{
		Address:            "127.0.0.1",
		Port:               masterPort,
		Users:              users,
		MasterUser:         acl.ReplicationUser,
		MasterAuth:         creds[acl.Replication].Current,
		Maxmemory:          "64mb",
		MaxmemoryPolicy:    "allkeys-lru",
		AppendOnly:         true,
		AppendFsync:        "everysec",
		SavePoints:         []SavePoint{{Seconds: 900, Changes: 1}, {Seconds: 300, Changes: 10}},
		MinReplicasToWrite: 1,
		MinReplicasMaxLag:  10,
		Engine:             e,
	}
	replica := master
	replica.Port = replicaPort
	replica.Maxmemory = "32MB"
	replica.MaxmemoryPolicy = "noeviction"
	replica.AppendOnly = false
	replica.AppendFsync = "always"
	replica.SavePoints = nil
	replica.MinReplicasToWrite = 0
	replica.ReplicaOf = &endpoint.Endpoint{Host: "127.0.0.1", Port: masterPort}

	masterDir, replicaDir := t.TempDir(), t.TempDir()
	var procs []*testredis.Proc // master, replica
	for _, m := range []struct {
		r   Redis
		dir string
	}{{master, masterDir}, {replica, replicaDir}} {
		conf, err := RedisConf(m.r)
		if err != nil {
			t.Fatal(err)
		}
		procs = append(procs, startACL(t, e, m.dir, m.r.Port, conf, acl.AdminUser, adminPw, false))
	}

	mc, rc := client(masterPort, acl.AdminUser, adminPw), client(replicaPort, acl.AdminUser, adminPw)
	bc := client(masterPort, backend.Name, backendPw)
	defer mc.Close()
	defer rc.Close()
	defer bc.Close()

	t.Run("the default user is disabled and every user needs its own password", func(t *testing.T) {
		anon := client(masterPort, "", "")
		defer anon.Close()
		if err := anon.Ping(ctx).Err(); err == nil || !strings.Contains(err.Error(), "NOAUTH") {
			t.Errorf("PING without logging in: %v", err)
		}
		for _, pw := range []string{"", adminPw, backendPw} {
			c := client(masterPort, "", pw) // AUTH <pw>: the default user
			err := c.Ping(ctx).Err()
			c.Close()
			if err == nil {
				t.Errorf("logged in as the default user")
			}
		}
		def := getUser(ctx, t, mc, "default")
		if flags := def["flags"]; !strings.Contains(flags, "off") || strings.Contains(flags, "nopass") || strings.Contains(flags, " on") {
			t.Errorf("default user flags %s, want off and not nopass (protected-mode would apply)", flags)
		}
		for _, u := range users {
			for _, pw := range append([]string{"wrong"}, u.Passwords...) {
				c := client(masterPort, u.Name, pw+"x")
				err := c.Ping(ctx).Err()
				c.Close()
				if err == nil {
					t.Errorf("%s logged in with a wrong password", u.Name)
				}
			}
			for _, pw := range u.Passwords {
				c := client(masterPort, u.Name, pw)
				err := c.Ping(ctx).Err()
				c.Close()
				if err != nil && !strings.Contains(err.Error(), "NOPERM") {
					t.Errorf("%s cannot log in with its password: %v", u.Name, err)
				}
			}
		}
	})

	t.Run("replica logs in to the master with masteruser/masterauth", func(t *testing.T) {
		eventually(t, 20*time.Second, "replica link up", func() error {
			info, err := rc.Info(ctx, "replication").Result()
			if err != nil {
				return err
			}
			if infoField(info, "role") != "slave" || infoField(info, "master_port") != strconv.Itoa(masterPort) ||
				infoField(info, "master_link_status") != "up" {
				return fmt.Errorf("replica INFO replication:\n%s", info)
			}
			return nil
		})
		list, err := mc.Do(ctx, "CLIENT", "LIST", "TYPE", "replica").Text()
		if err != nil || !strings.Contains(list, "user="+acl.ReplicationUser+" ") {
			t.Errorf("the master's replica connection is not the replication user's: %q %v", list, err)
		}
		// min-replicas-to-write 1 is met once the replica has acked.
		eventually(t, 15*time.Second, "SET on master", func() error { return bc.Set(ctx, "k", hostilePassword, 0).Err() })
		rb := client(replicaPort, backend.Name, backendPw)
		defer rb.Close()
		eventually(t, 15*time.Second, "GET on replica", func() error {
			v, err := rb.Get(ctx, "k").Result()
			if err == nil && v != hostilePassword {
				return fmt.Errorf("replica has %q", v)
			}
			return err
		})
	})

	t.Run("every user has exactly its role's rights", func(t *testing.T) {
		const (
			yes = true
			no  = false
		)
		tests := []struct {
			user    string
			allowed bool
			command []string
		}{
			{acl.ReplicationUser, yes, []string{"psync", "?", "-1"}},
			{acl.ReplicationUser, yes, []string{"replconf", "listening-port", "6380"}},
			{acl.ReplicationUser, yes, []string{"ping"}},
			{acl.ReplicationUser, no, []string{"get", "k"}},
			{acl.ReplicationUser, no, []string{"set", "k", "v"}},
			{acl.ReplicationUser, no, []string{"info"}},
			{acl.ReplicationUser, no, []string{"sync"}},
			{acl.ReplicationUser, no, []string{"config", "set", "maxmemory", "1"}},
			{acl.ReplicationUser, no, []string{"subscribe", "c"}},

			// What Sentinel sends a redis-server (Redis Sentinel docs).
			{acl.MonitoringUser, yes, []string{"info"}},
			{acl.MonitoringUser, yes, []string{"ping"}},
			{acl.MonitoringUser, yes, []string{"role"}},
			{acl.MonitoringUser, yes, []string{"subscribe", "__sentinel__:hello"}},
			{acl.MonitoringUser, yes, []string{"publish", "__sentinel__:hello", "x"}},
			{acl.MonitoringUser, yes, []string{"slaveof", "no", "one"}},
			{acl.MonitoringUser, yes, []string{"config", "rewrite"}},
			{acl.MonitoringUser, yes, []string{"client", "setname", "sentinel-1-cmd"}},
			{acl.MonitoringUser, yes, []string{"client", "kill", "type", "normal"}},
			{acl.MonitoringUser, yes, []string{"script", "kill"}},
			{acl.MonitoringUser, yes, []string{"multi"}},
			{acl.MonitoringUser, yes, []string{"exec"}},
			{acl.MonitoringUser, no, []string{"get", "k"}},
			{acl.MonitoringUser, no, []string{"config", "set", "maxmemory", "1"}},
			{acl.MonitoringUser, no, []string{"config", "get", "*"}},
			{acl.MonitoringUser, no, []string{"flushall"}},
			{acl.MonitoringUser, no, []string{"acl", "setuser", "x"}},
			{acl.MonitoringUser, no, []string{"shutdown"}},
			{acl.MonitoringUser, no, []string{"debug", "sleep", "0"}},

			// The backend's default rules.
			{backend.Name, yes, []string{"get", "k"}},
			{backend.Name, yes, []string{"set", "k", "v"}},
			{backend.Name, yes, []string{"eval", "return 1", "0"}},
			{backend.Name, yes, []string{"evalsha", "e0e1f9fabfc9d4800c877a703b823ac0578ff8db", "0"}},
			{backend.Name, yes, []string{"publish", "c", "m"}},
			{backend.Name, yes, []string{"subscribe", "c"}},
			{backend.Name, yes, []string{"psubscribe", "c*"}},
			{backend.Name, yes, []string{"multi"}},
			{backend.Name, yes, []string{"client", "setname", "app"}},
			{backend.Name, no, []string{"config", "set", "maxmemory", "1"}},
			{backend.Name, no, []string{"config", "get", "maxmemory"}},
			{backend.Name, no, []string{"flushall"}},
			{backend.Name, no, []string{"flushdb"}},
			{backend.Name, no, []string{"shutdown"}},
			{backend.Name, no, []string{"replicaof", "no", "one"}},
			{backend.Name, no, []string{"slaveof", "no", "one"}},
			{backend.Name, no, []string{"acl", "setuser", "backend", "nopass"}},
			{backend.Name, no, []string{"debug", "sleep", "0"}},
			{backend.Name, no, []string{"monitor"}},
			{backend.Name, no, []string{"keys", "*"}},
			{backend.Name, no, []string{"client", "kill", "type", "normal"}},
			{backend.Name, no, []string{"save"}},
			{backend.Name, no, []string{"psync", "?", "-1"}},
			{backend.Name, no, []string{"module", "list"}},
			{backend.Name, no, []string{"failover"}},

			{acl.AdminUser, yes, []string{"config", "set", "maxmemory", "1"}},
			{acl.AdminUser, yes, []string{"flushall"}},
			{acl.AdminUser, yes, []string{"acl", "setuser", "x"}},
			{acl.DefaultUser, no, []string{"ping"}},
		}
		for _, tt := range tests {
			got := dryRun(ctx, t, mc, tt.user, tt.command...)
			if (got == "OK") != tt.allowed {
				t.Errorf("%s %q: allowed=%v, want %v (%s)", tt.user, tt.command, got == "OK", tt.allowed, got)
			}
		}

		// The same through real connections.
		if err := bc.Set(ctx, "k2", "v", 0).Err(); err != nil {
			t.Errorf("backend SET: %v", err)
		}
		if v, err := bc.Eval(ctx, "return redis.call('get', KEYS[1])", []string{"k2"}).Text(); err != nil || v != "v" {
			t.Errorf("backend EVAL: %q %v", v, err)
		}
		if err := bc.Publish(ctx, "c", "m").Err(); err != nil {
			t.Errorf("backend PUBLISH: %v", err)
		}
		for what, err := range map[string]error{
			"CONFIG SET":  bc.ConfigSet(ctx, "maxmemory", "1").Err(),
			"FLUSHALL":    bc.FlushAll(ctx).Err(),
			"ACL SETUSER": bc.Do(ctx, "ACL", "SETUSER", backend.Name, "nopass").Err(),
			"REPLICAOF":   bc.ReplicaOf(ctx, "127.0.0.1", "1").Err(),
		} {
			if err == nil || !strings.HasPrefix(err.Error(), "NOPERM") {
				t.Errorf("backend %s: %v, want NOPERM", what, err)
			}
		}
		repl := client(masterPort, acl.ReplicationUser, creds[acl.Replication].Current)
		defer repl.Close()
		if err := repl.Ping(ctx).Err(); err != nil {
			t.Errorf("replication user PING: %v", err)
		}
		if err := repl.Get(ctx, "k").Err(); err == nil || !strings.HasPrefix(err.Error(), "NOPERM") {
			t.Errorf("replication user GET: %v, want NOPERM", err)
		}
	})

	t.Run("master CONFIG GET", func(t *testing.T) {
		want := map[string]string{
			"masteruser":               acl.ReplicationUser,
			"masterauth":               hostilePassword,
			"requirepass":              "",
			"bind":                     "127.0.0.1",
			"port":                     strconv.Itoa(masterPort),
			"protected-mode":           "yes",
			"maxmemory":                strconv.Itoa(64 << 20),
			"maxmemory-policy":         "allkeys-lru",
			"appendonly":               "yes",
			"appendfsync":              "everysec",
			"appendfilename":           "appendonly.aof",
			"appenddirname":            "appendonlydir",
			"save":                     "900 1 300 10",
			"dir":                      masterDir,
			"dbfilename":               "dump.rdb",
			"min-replicas-to-write":    "1",
			"min-replicas-max-lag":     "10",
			"replica-announce-ip":      "127.0.0.1",
			"replica-announce-port":    strconv.Itoa(masterPort),
			"replica-serve-stale-data": "yes",
			"replica-read-only":        "yes",
			"repl-diskless-sync":       "yes",
			"replica-priority":         "100",
			"tcp-keepalive":            "60",
			"daemonize":                "no",
		}
		for k, v := range want {
			got, err := mc.ConfigGet(ctx, k).Result()
			if err != nil {
				t.Fatalf("CONFIG GET %s: %v", k, err)
			}
			if got[k] != v {
				t.Errorf("CONFIG GET %s = %q, want %q", k, got[k], v)
			}
		}
	})

	t.Run("the file holds no user's password in clear text", func(t *testing.T) {
		b, err := os.ReadFile(procs[0].Conf)
		if err != nil {
			t.Fatal(err)
		}
		for cred, pw := range creds {
			if cred != acl.Replication { // masterauth, by necessity
				noClearText(t, b, string(cred), pw.Current)
			}
		}
	})

	// A password rotation re-sets the backend user with both passwords,
	// then with the new one only. Its subscribers (and other connections)
	// must not be dropped: Redis 7.0 kills a user's pub/sub connections
	// only when ACL SETUSER takes channels away from it.
	t.Run("connections survive ACL SETUSER reset with the same rules", func(t *testing.T) {
		narrow := acl.User{Name: "narrow", Passwords: []string{"narrow-pw"},
			Rules: []string{"~app:*", "&news:*", "+@all", "-@admin", "-@dangerous"}}
		if err := mc.Do(ctx, setUser(narrow)...).Err(); err != nil {
			t.Fatal(err)
		}
		for _, tt := range []struct {
			user acl.User
			pw   string
		}{
			{acl.User{Name: backend.Name, Passwords: []string{backendPw}, Rules: backend.Rules}, backendPw},
			{narrow, "narrow-pw"},
		} {
			u := tt.user
			sub := loginRESP(t, masterPort, u.Name, tt.pw)
			subscribe(t, sub, "news:1")
			plain := loginRESP(t, masterPort, u.Name, tt.pw)
			before := pubsubClients(ctx, t, mc, u.Name)
			if len(before) != 1 {
				t.Fatalf("%s subscribers: %v", u.Name, before)
			}

			next := "next-" + tt.pw
			for step, passwords := range [][]string{{tt.pw, next}, {next}} {
				u.Passwords = passwords
				if err := mc.Do(ctx, setUser(u)...).Err(); err != nil {
					t.Fatal(err)
				}
				stillSubscribed(ctx, t, mc, sub, "news:1", fmt.Sprintf("step %d", step))
				if got := pubsubClients(ctx, t, mc, u.Name); !slices.Equal(got, before) {
					t.Fatalf("%s step %d: subscribers %v, were %v", u.Name, step, got, before)
				}
				if res, err := plain.do("PING"); err != nil || !slices.Equal(res, []string{"PONG"}) {
					t.Fatalf("%s step %d: a logged-in connection was dropped: %q %v", u.Name, step, res, err)
				}
			}
			for pw, ok := range map[string]bool{tt.pw: false, next: true} {
				c := client(masterPort, u.Name, pw)
				err := c.Ping(ctx).Err()
				c.Close()
				if (err == nil) != ok {
					t.Errorf("%s login after the rotation: %v, want ok=%v", u.Name, err, ok)
				}
			}
			t.Logf("%s: subscriber %v kept its connection and messages through ACL SETUSER reset on >old >new and reset on >new", u.Name, before)
		}

		// The control: the test sees a dropped subscriber. Taking the
		// channel away makes Redis 7.0 close the connection.
		sub := loginRESP(t, masterPort, narrow.Name, "next-narrow-pw")
		subscribe(t, sub, "news:2")
		narrow.Passwords = []string{"next-narrow-pw"}
		narrow.Rules = []string{"~app:*", "&other:*", "+@all", "-@admin", "-@dangerous"}
		if err := mc.Do(ctx, setUser(narrow)...).Err(); err != nil {
			t.Fatal(err)
		}
		if res, err := sub.read(5 * time.Second); err == nil {
			t.Fatalf("a subscriber whose channel was taken away still reads: %q", res)
		}
		if got := pubsubClients(ctx, t, mc, narrow.Name); len(got) != 0 {
			t.Fatalf("a subscriber whose channel was taken away is still connected: %v", got)
		}
	})

	t.Run("every byte value survives", func(t *testing.T) {
		var all []byte
		for c := 0; c < 256; c++ {
			all = append(all, byte(c))
		}
		userPw := string(all) + hostilePassword + string(all)
		masterAuth := string(all[1:]) + hostilePassword
		r := Redis{Address: "127.0.0.1", Port: freePort(t), Maxmemory: "0", MaxmemoryPolicy: "noeviction", AppendFsync: "no",
			Users:      []acl.User{{Name: "admin", Passwords: []string{userPw}, Rules: []string{"~*", "&*", "+@all"}}},
			MasterUser: "replication", MasterAuth: masterAuth, Engine: e}
		conf, err := RedisConf(r)
		if err != nil {
			t.Fatal(err)
		}
		startACL(t, e, t.TempDir(), r.Port, conf, "admin", userPw, false)
		c := client(r.Port, "admin", userPw)
		defer c.Close()
		got, err := c.ConfigGet(ctx, "masterauth").Result()
		if err != nil || got["masterauth"] != masterAuth {
			t.Fatalf("CONFIG GET masterauth = %q, %v", got["masterauth"], err)
		}
	})

	t.Run("users survive CONFIG REWRITE and a restart", func(t *testing.T) {
		getUsers := func() map[string]map[string]string {
			out := map[string]map[string]string{}
			names, err := mc.Do(ctx, "ACL", "USERS").StringSlice()
			if err != nil {
				t.Fatal(err)
			}
			for _, n := range names {
				out[n] = getUser(ctx, t, mc, n)
			}
			return out
		}
		rotated := acl.User{Name: backend.Name, Passwords: []string{"rotated-1", "rotated-2"}, Rules: backend.Rules}
		if err := mc.Do(ctx, setUser(rotated)...).Err(); err != nil {
			t.Fatal(err)
		}
		before := getUsers()
		b, _ := os.ReadFile(procs[0].Conf)
		if bytes.Contains(b, []byte(sha("rotated-1")[1:])) {
			t.Fatalf("ACL SETUSER alone rewrote the file")
		}
		if err := mc.ConfigRewrite(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(procs[0].Conf)
		if err != nil {
			t.Fatal(err)
		}
		lines, err := ParseConf(b)
		if err != nil {
			t.Fatalf("rewritten redis.conf: %v", err)
		}
		// Valkey writes these two back under its own names.
		for _, d := range []string{"masterauth", "masteruser", "primaryauth", "primaryuser"} {
			if e.RewrittenAs(d) != d && len(linesFor(lines, d)) != 0 {
				t.Errorf("%s engine: CONFIG REWRITE kept %s (engine.RewrittenAs says %s)", e.Name, d, e.RewrittenAs(d))
			}
		}
		masterauth, masteruser := e.RewrittenAs("masterauth"), e.RewrittenAs("masteruser")
		expectOnce(t, lines, masterauth, masterauth, hostilePassword)
		expectOnce(t, lines, masteruser, masteruser, acl.ReplicationUser)
		var backendLine []string
		for _, l := range linesFor(lines, "user") {
			if l[1] == backend.Name {
				backendLine = l
			}
		}
		if !slices.Contains(backendLine, sha("rotated-1")) || !slices.Contains(backendLine, sha("rotated-2")) {
			t.Fatalf("rewritten backend user %q lacks the new hashes", backendLine)
		}
		noClearText(t, b, "rotated", "rotated-1")
		for cred, pw := range creds {
			if cred != acl.Replication {
				noClearText(t, b, string(cred), pw.Current)
			}
		}
		t.Logf("rewritten user lines: %q", linesFor(lines, "user"))

		restart(t, procs[0])
		if after := getUsers(); !reflect.DeepEqual(after, before) {
			t.Fatalf("users after a restart from the rewritten file:\n%v\nbefore:\n%v", after, before)
		}
		for _, pw := range rotated.Passwords {
			c := client(masterPort, backend.Name, pw)
			if err := c.Ping(ctx).Err(); err != nil {
				t.Errorf("backend login after the restart: %v", err)
			}
			c.Close()
		}
	})
}

func TestRealSentinel(t *testing.T) { testredis.ForEach(t, testRealSentinel) }

func testRealSentinel(t *testing.T, e engine.Engine) {
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()

	creds := realCreds()
	backend := acl.Backend{Name: acl.DefaultBackendUser, Rules: acl.DefaultBackendRules}
	adminPw := creds[acl.Admin].Current
	const name = "it-master.1"

	if _, err := SentinelConf(Sentinel{Address: "127.0.0.1", Port: 1, PeerUser: "p", PeerPassword: "x", MasterName: name,
		Master: endpoint.Endpoint{Host: "127.0.0.1", Port: 2}, Quorum: 1, DownAfterMs: 1, FailoverTimeoutMs: 1, ParallelSyncs: 1,
		AuthUser: "m", AuthPass: hostilePassword}); err == nil {
		t.Fatal("SentinelConf accepted a password Sentinel would rewrite into broken lines")
	}

	// A master and a replica with the formation's users.
	masterPort, replicaPort := freePort(t), freePort(t)
	data := func(port int, replicaOf *endpoint.Endpoint) []byte {
		conf, err := RedisConf(Redis{
			Address: "127.0.0.1", Port: port, Users: acl.ServerUsers(creds, backend),
			MasterUser: acl.ReplicationUser, MasterAuth: creds[acl.Replication].Current,
			Maxmemory: "16mb", MaxmemoryPolicy: "noeviction", AppendFsync: "everysec", ReplicaOf: replicaOf, Engine: e,
		})
		if err != nil {
			t.Fatal(err)
		}
		return conf
	}
	masterProc := startACL(t, e, t.TempDir(), masterPort, data(masterPort, nil), acl.AdminUser, adminPw, false)
	startACL(t, e, t.TempDir(), replicaPort, data(replicaPort, &endpoint.Endpoint{Host: "127.0.0.1", Port: masterPort}), acl.AdminUser, adminPw, false)
	master := endpoint.Endpoint{Host: "127.0.0.1", Port: masterPort}

	// Three sentinels, quorum 2.
	const n = 3
	var sentinels []*testredis.Proc
	var admins []*redis.SentinelClient
	started := time.Now()
	// Each sentinel has its run ID given and knows the two others from its
	// config, as the operator writes them.
	ports := make([]int, n)
	ids := make([]string, n)
	for i := range n {
		ports[i], ids[i] = freePort(t), fmt.Sprintf("%040x", i+1)
	}
	for i, port := range ports {
		var known []KnownSentinel
		for j := range n {
			if j != i {
				known = append(known, KnownSentinel{Address: endpoint.Endpoint{Host: "127.0.0.1", Port: ports[j]}, ID: ids[j]})
			}
		}
		conf, err := SentinelConf(Sentinel{
			Address:           "127.0.0.1",
			Port:              port,
			Users:             acl.SentinelUsers(creds, backend, e),
			PeerUser:          acl.PeerUser,
			PeerPassword:      creds[acl.Peer].Current,
			MasterName:        name,
			Master:            master,
			Quorum:            2,
			DownAfterMs:       2000,
			FailoverTimeoutMs: 10000,
			ParallelSyncs:     1,
			AuthUser:          acl.MonitoringUser,
			AuthPass:          creds[acl.Monitoring].Current,
			KnownReplicas:     []endpoint.Endpoint{{Host: "127.0.0.1", Port: replicaPort}},
			ID:                ids[i],
			KnownSentinels:    known,
			Engine:            e,
		})
		if err != nil {
			t.Fatal(err)
		}
		p := startACL(t, e, t.TempDir(), port, conf, acl.AdminUser, adminPw, true)
		sentinels = append(sentinels, p)
		sc := sentinelClient(port, acl.AdminUser, adminPw)
		defer sc.Close()
		admins = append(admins, sc)
		myid := redis.NewStringCmd(ctx, "SENTINEL", "MYID")
		if err := sc.Process(ctx, myid); err != nil || myid.Val() != ids[i] {
			t.Fatalf("sentinel %d: SENTINEL MYID %q, %v; want %s", i, myid.Val(), myid.Err(), ids[i])
		}
		peers, err := sc.Sentinels(ctx, name).Result()
		if err != nil || len(peers) != n-1 {
			t.Fatalf("sentinel %d knows %d sentinels from its config (%v), want %d", i, len(peers), err, n-1)
		}
		for _, peer := range peers {
			if !slices.Contains(ids, peer["runid"]) {
				t.Fatalf("sentinel %d knows a sentinel of run ID %q", i, peer["runid"])
			}
		}
	}

	// healthy waits until a sentinel reports the master reachable and
	// logged in (flags exactly "master" and a run id, which Sentinel only
	// learns from an INFO reply, which needs the monitoring user), its
	// replica, and both other sentinels reachable (flags exactly
	// "sentinel": a failing AUTH with sentinel-user would show as s_down or
	// disconnected).
	healthy := func(t *testing.T, sc *redis.SentinelClient) {
		t.Helper()
		eventually(t, 30*time.Second, "sentinel sees the formation", func() error {
			m, err := sc.Master(ctx, name).Result()
			if err != nil {
				return err
			}
			if m["flags"] != "master" || m["runid"] == "" || m["num-slaves"] != "1" || m["num-other-sentinels"] != strconv.Itoa(n-1) {
				return fmt.Errorf("master state %v", m)
			}
			peers, err := sc.Sentinels(ctx, name).Result()
			if err != nil {
				return err
			}
			for _, p := range peers {
				if p["flags"] != "sentinel" || p["runid"] == "" {
					return fmt.Errorf("peer %v", p)
				}
			}
			return nil
		})
	}
	for _, sc := range admins {
		healthy(t, sc)
	}
	// Outlast down-after-milliseconds: a failing AUTH would show as s_down.
	time.Sleep(time.Until(started.Add(3 * time.Second)))

	t.Run("sentinels log in as the monitoring and the peer user", func(t *testing.T) {
		for _, sc := range admins {
			healthy(t, sc)
		}
		mc := client(masterPort, acl.AdminUser, adminPw)
		defer mc.Close()
		list, err := mc.Do(ctx, "CLIENT", "LIST").Text()
		if err != nil {
			t.Fatal(err)
		}
		if c := strings.Count(list, "user="+acl.MonitoringUser+" "); c < n {
			t.Errorf("%d connections of %s on the master, want at least %d:\n%s", c, acl.MonitoringUser, n, list)
		}
		for i, s := range sentinels {
			sc := client(s.Port, acl.AdminUser, adminPw)
			list, err := sc.Do(ctx, "CLIENT", "LIST").Text()
			sc.Close()
			if err != nil {
				t.Fatal(err)
			}
			if c := strings.Count(list, "user="+acl.PeerUser+" "); c < n-1 {
				t.Errorf("sentinel %d: %d connections of %s, want at least %d:\n%s", i, c, acl.PeerUser, n-1, list)
			}
		}
	})

	t.Run("the backend user may only discover the master on a sentinel", func(t *testing.T) {
		bs := sentinelClient(sentinels[0].Port, backend.Name, creds[acl.BackendSentinelPassword].Current)
		defer bs.Close()
		addr, err := bs.GetMasterAddrByName(ctx, name).Result()
		if err != nil || !slices.Equal(addr, []string{"127.0.0.1", strconv.Itoa(masterPort)}) {
			t.Fatalf("backend discovery: %v %v", addr, err)
		}
		if _, err := bs.Replicas(ctx, name).Result(); err != nil {
			t.Errorf("backend SENTINEL REPLICAS: %v", err)
		}
		if _, err := bs.Sentinels(ctx, name).Result(); err != nil {
			t.Errorf("backend SENTINEL SENTINELS: %v", err)
		}
		peer := sentinelClient(sentinels[0].Port, acl.PeerUser, creds[acl.Peer].Current)
		defer peer.Close()
		for who, c := range map[string]*redis.SentinelClient{backend.Name: bs, acl.PeerUser: peer} {
			for _, cmd := range [][]any{
				{"SENTINEL", "SET", name, "quorum", "1"},
				{"SENTINEL", "REMOVE", name},
				{"SENTINEL", "MONITOR", "evil", "127.0.0.1", "1", "1"},
				{"SENTINEL", "FAILOVER", name},
				{"SENTINEL", "RESET", name},
				{"SENTINEL", "CONFIG", "SET", "sentinel-pass", "x"},
				{"SENTINEL", "FLUSHCONFIG"},
				{"ACL", "SETUSER", who, "nopass"},
				{"SHUTDOWN"},
			} {
				if err := c.Process(ctx, redis.NewCmd(ctx, cmd...)); err == nil || !strings.HasPrefix(err.Error(), "NOPERM") {
					t.Errorf("%s %v: %v, want NOPERM", who, cmd, err)
				}
			}
		}
		// The peer user answers votes.
		vote := redis.NewSliceCmd(ctx, "SENTINEL", "IS-MASTER-DOWN-BY-ADDR", "127.0.0.1", strconv.Itoa(masterPort), "0", "*")
		if err := peer.Process(ctx, vote); err != nil {
			t.Errorf("peer SENTINEL IS-MASTER-DOWN-BY-ADDR: %v", err)
		}
	})

	t.Run("Sentinel's own rewrite keeps the users and credentials", func(t *testing.T) {
		// Sentinel has rewritten its file by now (it persists its myid at
		// startup), writing users, sentinel-user/pass and auth-user/pass
		// unquoted.
		b, err := os.ReadFile(sentinels[0].Conf)
		if err != nil {
			t.Fatal(err)
		}
		lines, err := ParseConf(b)
		if err != nil {
			t.Fatalf("Sentinel's rewritten config: %v\n%s", err, b)
		}
		if len(linesFor(lines, "sentinel myid")) != 1 {
			t.Fatalf("Sentinel did not rewrite its config:\n%s", b)
		}
		expectOnce(t, lines, "sentinel sentinel-user", "sentinel", "sentinel-user", acl.PeerUser)
		expectOnce(t, lines, "sentinel sentinel-pass", "sentinel", "sentinel-pass", creds[acl.Peer].Current)
		expectOnce(t, lines, "sentinel auth-user", "sentinel", "auth-user", name, acl.MonitoringUser)
		expectOnce(t, lines, "sentinel auth-pass", "sentinel", "auth-pass", name, creds[acl.Monitoring].Current)
		if got := len(linesFor(lines, "user")); got != 4 {
			t.Fatalf("%d user lines after Sentinel's rewrite, want 4:\n%s", got, b)
		}
		for _, cred := range []acl.Credential{acl.Admin, acl.BackendSentinelPassword, acl.BackendPassword, acl.Replication} {
			noClearText(t, b, string(cred), creds[cred].Current)
		}
	})

	t.Run("SENTINEL FLUSHCONFIG persists ACL SETUSER", func(t *testing.T) {
		s := sentinels[0]
		sc := client(s.Port, acl.AdminUser, adminPw)
		defer sc.Close()
		rotated := acl.User{Name: backend.Name, Passwords: []string{"rotated-1", "rotated-2"}, Rules: acl.DiscoveryRules}
		if err := sc.Do(ctx, setUser(rotated)...).Err(); err != nil {
			t.Fatal(err)
		}
		if b, _ := os.ReadFile(s.Conf); bytes.Contains(b, []byte(sha("rotated-1")[1:])) {
			t.Log("ACL SETUSER alone rewrote sentinel.conf")
		}
		if err := sc.Do(ctx, "SENTINEL", "FLUSHCONFIG").Err(); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(s.Conf)
		if err != nil {
			t.Fatal(err)
		}
		lines, err := ParseConf(b)
		if err != nil {
			t.Fatal(err)
		}
		var backendLine []string
		for _, l := range linesFor(lines, "user") {
			if l[1] == backend.Name {
				backendLine = l
			}
		}
		if !slices.Contains(backendLine, sha("rotated-1")) || !slices.Contains(backendLine, sha("rotated-2")) {
			t.Fatalf("flushed backend user %q lacks the new hashes:\n%s", backendLine, b)
		}
		noClearText(t, b, "rotated", "rotated-1")
		t.Logf("after FLUSHCONFIG: %q", backendLine)

		sentinels[0] = restart(t, s)
		for _, pw := range rotated.Passwords {
			c := sentinelClient(s.Port, backend.Name, pw)
			if _, err := c.GetMasterAddrByName(ctx, name).Result(); err != nil {
				t.Errorf("backend discovery after the restart: %v", err)
			}
			c.Close()
		}
		healthy(t, admins[0])
	})

	// The master dies: the sentinels agree it is down (o_down needs the
	// peers' votes, asked with the peer user) and fail over (the monitoring
	// user promotes the replica: MULTI, SLAVEOF NO ONE, CONFIG REWRITE,
	// CLIENT KILL, EXEC).
	t.Run("o_down vote and failover", func(t *testing.T) {
		sub := loginRESP(t, sentinels[1].Port, acl.AdminUser, adminPw)
		if err := sub.send("SUBSCRIBE", "+odown", "+switch-master"); err != nil {
			t.Fatal(err)
		}
		for range 2 {
			if _, err := sub.read(5 * time.Second); err != nil {
				t.Fatal(err)
			}
		}
		masterProc.Stop()
		var odown, switched string
		deadline := time.Now().Add(30 * time.Second)
		for switched == "" && time.Now().Before(deadline) {
			res, err := sub.read(time.Until(deadline))
			if err != nil {
				t.Fatalf("waiting for +odown and +switch-master: %v", err)
			}
			if len(res) == 3 && res[0] == "message" {
				switch res[1] {
				case "+odown":
					odown = res[2]
				case "+switch-master":
					switched = res[2]
				}
			}
		}
		t.Logf("+odown %q; +switch-master %q", odown, switched)
		if !strings.Contains(odown, "#quorum 2/2") && !strings.Contains(odown, "#quorum 3/2") {
			t.Errorf("+odown %q: want the peers' votes counted", odown)
		}
		if want := fmt.Sprintf("%s 127.0.0.1 %d 127.0.0.1 %d", name, masterPort, replicaPort); switched != want {
			t.Fatalf("+switch-master %q, want %q", switched, want)
		}
		rc := client(replicaPort, acl.AdminUser, adminPw)
		defer rc.Close()
		eventually(t, 15*time.Second, "replica promoted", func() error {
			info, err := rc.Info(ctx, "replication").Result()
			if err != nil || infoField(info, "role") != "master" {
				return fmt.Errorf("%v %s", err, info)
			}
			return nil
		})
	})
}
