//go:build linux

package render

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/incusops/redis-sentinel-operator/internal/endpoint"

	"github.com/redis/go-redis/v9"

	"github.com/incusops/redis-sentinel-operator/internal/testenv"
	"github.com/incusops/redis-sentinel-operator/internal/testredis"
)

// These tests start Debian's real redis-server (also in Sentinel mode) on
// loopback and check that what the renderer writes is what Redis reads.
// Install: apt-get install -y redis-server

// needRedis skips the test when redis-server is missing (fails under CI=true).
func needRedis(t *testing.T) {
	t.Helper()
	bin, err := testredis.Binary()
	if err != nil {
		testenv.Unavailable(t, "redis-server", err)
	}
	if v, err := exec.Command(bin, "--version").Output(); err == nil {
		t.Logf("%s", bytes.TrimSpace(v))
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	port, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// localize replaces only the Debian path directives (dir, logfile, pidfile)
// so the rendered file runs unprivileged in a temp dir. Every other line is
// kept byte for byte.
func localize(t *testing.T, conf []byte, dir string) []byte {
	t.Helper()
	paths := map[string]string{
		"dir":     dir,
		"logfile": filepath.Join(dir, "redis.log"),
		"pidfile": filepath.Join(dir, "redis.pid"),
	}
	var out bytes.Buffer
	replaced := 0
	for _, line := range strings.SplitAfter(string(conf), "\n") {
		trimmed := strings.Trim(line, " \t\r\n")
		if trimmed != "" && trimmed[0] != '#' {
			args, ok := SplitArgs(trimmed)
			if ok && len(args) == 2 {
				if p, found := paths[args[0]]; found {
					line = args[0] + " " + quoteToken(p) + "\n"
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

// start runs conf, localized to dir, on port until t ends (as Sentinel when
// sentinel is set).
func start(t *testing.T, dir string, port int, conf []byte, password string, sentinel bool) *testredis.Proc {
	t.Helper()
	p, err := testredis.Start(dir, port, localize(t, conf, dir), password, sentinel)
	return running(t, dir, p, err)
}

// running stops p when t ends and, if t failed, logs its output and the log
// file localize puts in dir.
func running(t *testing.T, dir string, p *testredis.Proc, err error) *testredis.Proc {
	t.Helper()
	logfile := filepath.Join(dir, "redis.log")
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

func client(port int, password string) *redis.Client {
	return redis.NewClient(&redis.Options{
		Addr:            net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
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

func TestRealRedisServer(t *testing.T) {
	needRedis(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	masterPort, replicaPort := freePort(t), freePort(t)
	master := Redis{
		Address:            "127.0.0.1",
		Port:               masterPort,
		Password:           hostilePassword,
		Maxmemory:          "64mb",
		MaxmemoryPolicy:    "allkeys-lru",
		AppendOnly:         true,
		AppendFsync:        "everysec",
		SavePoints:         []SavePoint{{Seconds: 900, Changes: 1}, {Seconds: 300, Changes: 10}},
		MinReplicasToWrite: 1,
		MinReplicasMaxLag:  10,
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
		procs = append(procs, start(t, m.dir, m.r.Port, conf, hostilePassword, false))
	}

	mc, rc := client(masterPort, hostilePassword), client(replicaPort, hostilePassword)
	defer mc.Close()
	defer rc.Close()
	eventually(t, 15*time.Second, "master PING", func() error { return mc.Ping(ctx).Err() })
	eventually(t, 15*time.Second, "replica PING", func() error { return rc.Ping(ctx).Err() })

	t.Run("wrong password is refused", func(t *testing.T) {
		for _, pw := range []string{"", hostilePassword[:len(hostilePassword)-1], "p"} {
			c := client(masterPort, pw)
			err := c.Ping(ctx).Err()
			c.Close()
			if err == nil {
				t.Errorf("PING with a wrong password succeeded")
			}
		}
	})

	t.Run("master CONFIG GET", func(t *testing.T) {
		want := map[string]string{
			"requirepass":              hostilePassword,
			"masterauth":               hostilePassword,
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

	t.Run("replica authenticates to the master with masterauth", func(t *testing.T) {
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
		got, err := rc.ConfigGet(ctx, "maxmemory-policy").Result()
		if err != nil || got["maxmemory-policy"] != "noeviction" {
			t.Errorf("replica maxmemory-policy = %v, %v", got, err)
		}
		// min-replicas-to-write 1 is met once the replica has acked.
		eventually(t, 15*time.Second, "SET on master", func() error { return mc.Set(ctx, "k", hostilePassword, 0).Err() })
		eventually(t, 15*time.Second, "GET on replica", func() error {
			v, err := rc.Get(ctx, "k").Result()
			if err == nil && v != hostilePassword {
				return fmt.Errorf("replica has %q", v)
			}
			return err
		})
	})

	t.Run("every byte value survives", func(t *testing.T) {
		var all []byte
		for c := 1; c < 256; c++ {
			all = append(all, byte(c))
		}
		pw := string(all) + hostilePassword + string(all)
		r := Redis{Address: "127.0.0.1", Port: freePort(t), Password: pw, Maxmemory: "0",
			MaxmemoryPolicy: "noeviction", AppendFsync: "no"}
		conf, err := RedisConf(r)
		if err != nil {
			t.Fatal(err)
		}
		start(t, t.TempDir(), r.Port, conf, pw, false)
		c := client(r.Port, pw)
		defer c.Close()
		eventually(t, 15*time.Second, "PING", func() error { return c.Ping(ctx).Err() })
		got, err := c.ConfigGet(ctx, "requirepass").Result()
		if err != nil || got["requirepass"] != pw {
			t.Fatalf("CONFIG GET requirepass = %q, %v", got["requirepass"], err)
		}
	})

	t.Run("CONFIG REWRITE keeps the file loadable", func(t *testing.T) {
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
		expectOnce(t, lines, "masterauth", "masterauth", hostilePassword)
	})
}

func TestRealSentinel(t *testing.T) {
	needRedis(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	// Sentinel passwords must be bare-token safe (see sentinelPassword), but
	// can still carry backslashes, '#', '$' and friends.
	redisPassword := "p\\a$s#w{o}r|d;x`~!@%^&*()[]<>?,./:=+\\x41"
	sentinelPassword := "\\S3nt!nel#;\\\\x41$"
	const name = "it-master.1"

	if _, err := SentinelConf(Sentinel{Address: "127.0.0.1", Port: 1, Password: "x", MasterName: name,
		Master: endpoint.Endpoint{Host: "127.0.0.1", Port: 2}, Quorum: 1, DownAfterMs: 1, FailoverTimeoutMs: 1, ParallelSyncs: 1,
		RedisPassword: hostilePassword}); err == nil {
		t.Fatal("SentinelConf accepted a password Sentinel would rewrite into broken lines")
	}

	masterPort, sentinelPort := freePort(t), freePort(t)
	masterConf, err := RedisConf(Redis{
		Address: "127.0.0.1", Port: masterPort, Password: redisPassword,
		Maxmemory: "16mb", MaxmemoryPolicy: "noeviction", AppendFsync: "everysec",
	})
	if err != nil {
		t.Fatal(err)
	}
	start(t, t.TempDir(), masterPort, masterConf, redisPassword, false)

	// A replica known from the file only: nothing listens there, so
	// Sentinel cannot have learned it from the master's INFO.
	configOnlyReplica := endpoint.Endpoint{Host: "127.0.0.1", Port: freePort(t)}
	s := Sentinel{
		KnownReplicas:     []endpoint.Endpoint{configOnlyReplica},
		Address:           "127.0.0.1",
		Port:              sentinelPort,
		Password:          sentinelPassword,
		MasterName:        name,
		Master:            endpoint.Endpoint{Host: "127.0.0.1", Port: masterPort},
		Quorum:            1,
		DownAfterMs:       2000,
		FailoverTimeoutMs: 60000,
		ParallelSyncs:     1,
		RedisPassword:     redisPassword,
	}
	sentinelConf, err := SentinelConf(s)
	if err != nil {
		t.Fatal(err)
	}
	sentinelDir := t.TempDir()
	sp := start(t, sentinelDir, sentinelPort, sentinelConf, sentinelPassword, true)
	started := time.Now()

	sc := redis.NewSentinelClient(&redis.Options{
		Addr:            net.JoinHostPort("127.0.0.1", strconv.Itoa(sentinelPort)),
		Password:        sentinelPassword,
		DisableIdentity: true,
		MaxRetries:      -1,
	})
	defer sc.Close()

	// healthy waits until Sentinel reports the master reachable and
	// authenticated: flags exactly "master" (no s_down, no disconnected) and
	// a run id, which Sentinel only learns from an INFO reply, which the
	// master only gives after a successful AUTH with auth-pass.
	healthy := func(t *testing.T) map[string]string {
		t.Helper()
		var m map[string]string
		eventually(t, 20*time.Second, "SENTINEL MASTER", func() error {
			var err error
			m, err = sc.Master(ctx, name).Result()
			if err != nil {
				return err
			}
			refresh, _ := strconv.Atoi(m["info-refresh"])
			if m["flags"] != "master" || m["runid"] == "" || refresh > 10000 {
				return fmt.Errorf("master state %v", m)
			}
			return nil
		})
		return m
	}

	m := healthy(t)
	for k, v := range map[string]string{
		"name":                    name,
		"ip":                      "127.0.0.1",
		"port":                    strconv.Itoa(masterPort),
		"quorum":                  "1",
		"down-after-milliseconds": "2000",
		"failover-timeout":        "60000",
		"parallel-syncs":          "1",
		"role-reported":           "master",
	} {
		if m[k] != v {
			t.Errorf("SENTINEL MASTER %s = %q, want %q", k, m[k], v)
		}
	}
	replicas, err := sc.Replicas(ctx, name).Result()
	if err != nil {
		t.Fatal(err)
	}
	if want := net.JoinHostPort(configOnlyReplica.Host, strconv.Itoa(configOnlyReplica.Port)); len(replicas) != 1 || replicas[0]["name"] != want {
		t.Errorf("SENTINEL REPLICAS = %v, want only the known replica %s", replicas, want)
	}
	// Outlast down-after-milliseconds: a failing AUTH would show as s_down.
	time.Sleep(time.Until(started.Add(3 * time.Second)))
	healthy(t)

	bad := redis.NewSentinelClient(&redis.Options{
		Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(sentinelPort)), Password: "wrong", DisableIdentity: true, MaxRetries: -1,
	})
	if err := bad.Ping(ctx).Err(); err == nil {
		t.Error("sentinel accepted a wrong password")
	}
	bad.Close()

	// Sentinel has rewritten its file by now (it persists its myid at
	// startup), writing sentinel-pass and auth-pass unquoted. The values must
	// survive that, and Sentinel must restart from the rewritten file.
	b, err := os.ReadFile(sp.Conf)
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
	expectOnce(t, lines, "sentinel auth-pass", "sentinel", "auth-pass", name, redisPassword)
	expectOnce(t, lines, "sentinel sentinel-pass", "sentinel", "sentinel-pass", sentinelPassword)

	sp.Stop()
	restarted, err := testredis.StartFile(sentinelDir, sentinelPort, sp.Conf, sentinelPassword, true)
	running(t, sentinelDir, restarted, err)
	healthy(t)
}
