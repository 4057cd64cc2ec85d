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
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// These tests start Debian's real redis-server and redis-sentinel on
// loopback and check that what the renderer writes is what Redis reads.
// Install: apt-get install -y redis-server redis-sentinel redis-tools

func redisBinaries(t *testing.T) (server, sentinel string) {
	t.Helper()
	server, err1 := exec.LookPath("redis-server")
	sentinel, err2 := exec.LookPath("redis-sentinel")
	if err1 != nil || err2 != nil {
		msg := "redis-server and redis-sentinel are not installed (apt-get install -y redis-server redis-sentinel redis-tools)"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	if v, err := exec.Command(server, "--version").Output(); err == nil {
		t.Logf("%s", bytes.TrimSpace(v))
	}
	return server, sentinel
}

// freePort asks the kernel for a free loopback port.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
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
			args, ok := sdsSplitArgs(trimmed)
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

type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
	dir  string
}

// start runs `bin conf` in the foreground (the conf says daemonize no), with
// its log dumped on failure and the process stopped at cleanup.
func start(t *testing.T, bin, dir string, conf []byte) *proc {
	t.Helper()
	confPath := filepath.Join(dir, "redis.conf")
	if err := os.WriteFile(confPath, conf, 0o600); err != nil { // Sentinel needs it writable
		t.Fatal(err)
	}
	return startFile(t, bin, dir, confPath)
}

func startFile(t *testing.T, bin, dir, confPath string) *proc {
	t.Helper()
	stdout, err := os.OpenFile(filepath.Join(dir, "stdout.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer stdout.Close()
	cmd := exec.Command(bin, confPath)
	cmd.Stdout, cmd.Stderr = stdout, stdout
	// Never outlive the test binary.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, done: make(chan struct{}), dir: dir}
	go func() { _ = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			for _, f := range []string{"stdout.log", "redis.log"} {
				if b, err := os.ReadFile(filepath.Join(dir, f)); err == nil {
					t.Logf("%s %s:\n%s", filepath.Base(bin), f, b)
				}
			}
		}
	})
	return p
}

func (p *proc) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
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
	serverBin, _ := redisBinaries(t)
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
	replica.ReplicaOf = &Endpoint{Host: "127.0.0.1", Port: masterPort}

	masterDir, replicaDir := t.TempDir(), t.TempDir()
	for _, m := range []struct {
		r   Redis
		dir string
	}{{master, masterDir}, {replica, replicaDir}} {
		conf, err := RedisConf(m.r)
		if err != nil {
			t.Fatal(err)
		}
		start(t, serverBin, m.dir, localize(t, conf, m.dir))
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
		dir := t.TempDir()
		start(t, serverBin, dir, localize(t, conf, dir))
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
		b, err := os.ReadFile(filepath.Join(masterDir, "redis.conf"))
		if err != nil {
			t.Fatal(err)
		}
		lines, err := parseConf(b)
		if err != nil {
			t.Fatalf("rewritten redis.conf: %v", err)
		}
		expectOnce(t, lines, "masterauth", "masterauth", hostilePassword)
	})
}

func TestRealSentinel(t *testing.T) {
	serverBin, sentinelBin := redisBinaries(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	// Sentinel passwords must be bare-token safe (see sentinelPassword), but
	// can still carry backslashes, '#', '$' and friends.
	redisPassword := "p\\a$s#w{o}r|d;x`~!@%^&*()[]<>?,./:=+\\x41"
	sentinelPassword := "\\S3nt!nel#;\\\\x41$"
	const name = "it-master.1"

	if _, err := SentinelConf(Sentinel{Address: "127.0.0.1", Port: 1, Password: "x", MasterName: name,
		Master: Endpoint{Host: "127.0.0.1", Port: 2}, Quorum: 1, DownAfterMs: 1, FailoverTimeoutMs: 1, ParallelSyncs: 1,
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
	masterDir := t.TempDir()
	start(t, serverBin, masterDir, localize(t, masterConf, masterDir))

	s := Sentinel{
		Address:           "127.0.0.1",
		Port:              sentinelPort,
		Password:          sentinelPassword,
		MasterName:        name,
		Master:            Endpoint{Host: "127.0.0.1", Port: masterPort},
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
	sp := start(t, sentinelBin, sentinelDir, localize(t, sentinelConf, sentinelDir))
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
	confPath := filepath.Join(sentinelDir, "redis.conf")
	b, err := os.ReadFile(confPath)
	if err != nil {
		t.Fatal(err)
	}
	lines, err := parseConf(b)
	if err != nil {
		t.Fatalf("Sentinel's rewritten config: %v\n%s", err, b)
	}
	if len(linesFor(lines, "sentinel myid")) != 1 {
		t.Fatalf("Sentinel did not rewrite its config:\n%s", b)
	}
	expectOnce(t, lines, "sentinel auth-pass", "sentinel", "auth-pass", name, redisPassword)
	expectOnce(t, lines, "sentinel sentinel-pass", "sentinel", "sentinel-pass", sentinelPassword)

	sp.stop()
	startFile(t, sentinelBin, sentinelDir, confPath)
	healthy(t)
}
