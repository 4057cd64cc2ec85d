package redisclient

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/incusops/redis-sentinel-operator/internal/config"
	"github.com/incusops/redis-sentinel-operator/internal/metrics"
	"github.com/incusops/redis-sentinel-operator/internal/testenv"
)

// TestSentinelModeFromSecretData runs one redis-server and one sentinel
// (quorum 1) on loopback and reaches the master through the sentinel, with
// the client built from connection-Secret data as the operator writes it.
func TestSentinelModeFromSecretData(t *testing.T) {
	const (
		masterName       = "rsf-test"
		sentinelPassword = "sentinel-Pa55"
	)
	master := ownRedis(t)
	sentinel, err := startSentinel(t.TempDir(), master.Port, masterName, testPassword, sentinelPassword)
	if err != nil {
		testenv.Unavailable(t, "redis-server", err)
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
