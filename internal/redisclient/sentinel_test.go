package redisclient

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/incusops/redis-sentinel-operator/internal/config"
	"github.com/incusops/redis-sentinel-operator/internal/engine"
	"github.com/incusops/redis-sentinel-operator/internal/metrics"
	"github.com/incusops/redis-sentinel-operator/internal/testenv"
	"github.com/incusops/redis-sentinel-operator/internal/testredis"
)

// TestSentinelModeFromSecretData runs one server and one sentinel (quorum
// 1) of each engine on loopback and reaches the master through the
// sentinel, with the client built from connection-Secret data as the
// operator writes it.
func TestSentinelModeFromSecretData(t *testing.T) {
	testredis.ForEach(t, testSentinelModeFromSecretData)
}

func testSentinelModeFromSecretData(t *testing.T, e engine.Engine) {
	const (
		masterName       = "rsf-test"
		sentinelPassword = "sentinel-Pa55"
	)
	master := ownServer(t, e.Name)
	sentinel, err := startSentinel(t.TempDir(), e.Name, master.Port, masterName, testPassword, sentinelPassword)
	if err != nil {
		t.Fatal(err)
	}
	sentinel.StopAtCleanup(t)

	// The sentinel knows the master it was told to monitor.
	sc := redis.NewSentinelClient(&redis.Options{Addr: sentinel.Addr(), Password: sentinelPassword})
	defer sc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	addr, err := sc.GetMasterAddrByName(ctx, masterName).Result()
	if err != nil {
		t.Fatalf("SENTINEL get-master-addr-by-name: %v\n%s", err, sentinel.Output())
	}
	if len(addr) != 2 || addr[1] != strconv.Itoa(master.Port) {
		t.Fatalf("sentinel names master %v, want port %d", addr, master.Port)
	}

	cache := metrics.NewCache(nil)
	secret := map[string][]byte{
		config.EnvSentinelAddrs:    []byte(" " + sentinel.Addr() + " ,"),
		config.EnvMasterName:       []byte(masterName),
		config.EnvSentinelPassword: []byte(sentinelPassword),
		config.EnvURL:              []byte("redis://:" + testPassword + "@dummy:6379/2"),
	}
	c, err := FromSecretData(secret, Options{Metrics: cache})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Options().Addr != "FailoverClient" {
		t.Fatalf("FromSecretData built a %q client, want a FailoverClient", c.Options().Addr)
	}

	pctx := WithSubsystem(ctx, "presence")
	if err := c.Set(pctx, "sentinel-test:k", "v", time.Minute).Err(); err != nil {
		t.Fatalf("SET through the sentinel: %v", err)
	}
	if v, err := c.Get(pctx, "sentinel-test:k").Result(); err != nil || v != "v" {
		t.Fatalf("GET through the sentinel = %q, %v", v, err)
	}
	if d, err := Canary(ctx, c, "sentinel-test:canary"); err != nil {
		t.Fatalf("Canary: %v", err)
	} else {
		t.Logf("canary through the sentinel: %v", d)
	}
	assertCounts(t, cache, counts{"presence": {2, 0}, "canary": {2, 0}})

	// The data went to the master's DB 2 (the DB from REDIS_URL).
	direct := redis.NewClient(&redis.Options{Addr: master.Addr(), Password: testPassword, DB: 2})
	defer direct.Close()
	if v, err := direct.Get(ctx, "sentinel-test:k").Result(); err != nil || v != "v" {
		t.Fatalf("GET on the master's DB 2 = %q, %v", v, err)
	}

	// A wrong sentinel password fails, and is counted as a miss.
	secret[config.EnvSentinelPassword] = []byte("wrong")
	bad, err := FromSecretData(secret, Options{Metrics: cache, MaxRetries: -1, DialerRetries: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	if _, err := Canary(ctx, bad, ""); err == nil {
		t.Fatal("canary with a wrong sentinel password succeeded")
	}
	assertCounts(t, cache, counts{"presence": {2, 0}, "canary": {2, 1}})
}

// TestSentinelModeWithACLUsers: the sentinel's default user is off and the
// client authenticates to it as the ACL user REDIS_SENTINEL_USERNAME names,
// and to the data node as REDIS_URL's user; a wrong sentinel user fails.
// On each engine.
func TestSentinelModeWithACLUsers(t *testing.T) { testredis.ForEach(t, testSentinelModeWithACLUsers) }

func testSentinelModeWithACLUsers(t *testing.T, e engine.Engine) {
	const (
		masterName       = "rsf-acl"
		sentinelUser     = "discovery"
		sentinelPassword = "discovery-Pa55"
	)
	master := ownServer(t, e.Name)
	dir := t.TempDir()
	var (
		sentinel *testredis.Proc
		err      error
	)
	for attempt := 0; attempt < 3; attempt++ {
		var port int
		if port, err = testenv.FreePort(); err != nil {
			t.Fatal(err)
		}
		conf := fmt.Sprintf(`port %d
bind 127.0.0.1
daemonize no
dir %s
logfile ""
user default off
user %s on >%s &* +@all
sentinel monitor %s 127.0.0.1 %d 1
sentinel auth-pass %s %s
`, port, dir, sentinelUser, sentinelPassword, masterName, master.Port, masterName, testPassword)
		if sentinel, err = testredis.Start(dir, port, []byte(conf), testredis.Spec{Engine: e.Name, Sentinel: true, Username: sentinelUser, Password: sentinelPassword}); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	sentinel.StopAtCleanup(t)

	secret := map[string][]byte{
		config.EnvSentinelAddrs:    []byte(sentinel.Addr()),
		config.EnvMasterName:       []byte(masterName),
		config.EnvSentinelUsername: []byte(sentinelUser),
		config.EnvSentinelPassword: []byte(sentinelPassword),
		config.EnvURL:              []byte("redis://default:" + testPassword + "@dummy:6379/0"),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := FromSecretData(secret, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Set(ctx, "sentinel-acl:k", "v", time.Minute).Err(); err != nil {
		t.Fatalf("SET through the sentinel as %s: %v\n%s", sentinelUser, err, sentinel.Output())
	}

	// The same password without the user name is the disabled default user.
	delete(secret, config.EnvSentinelUsername)
	bad, err := FromSecretData(secret, Options{MaxRetries: -1, DialerRetries: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	if err := bad.Ping(ctx).Err(); err == nil {
		t.Fatal("PING through the sentinel without the sentinel user succeeded")
	}
}
