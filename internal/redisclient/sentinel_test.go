package redisclient

import (
	"context"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/incusops/redis-sentinel-operator/internal/config"
	"github.com/incusops/redis-sentinel-operator/internal/metrics"
)

// TestSentinelModeFromSecretData runs one redis-server and one sentinel
// (quorum 1) on loopback and reaches the master through the sentinel, with
// the client built from connection-Secret data as the operator writes it.
func TestSentinelModeFromSecretData(t *testing.T) {
	needRedis(t)
	dir := t.TempDir()
	const (
		masterName       = "rsf-test"
		sentinelPassword = "sentinel-Pa55"
	)
	master, err := startRedis(filepath.Join(dir, "master"), testPassword)
	if err != nil {
		unavailable(t, err)
	}
	defer master.stop()
	sentinel, err := startSentinel(filepath.Join(dir, "sentinel"), master.port, masterName, testPassword, sentinelPassword)
	if err != nil {
		unavailable(t, err)
	}
	defer sentinel.stop()

	// The sentinel knows the master it was told to monitor.
	sc := redis.NewSentinelClient(&redis.Options{Addr: sentinel.addr(), Password: sentinelPassword})
	defer sc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	addr, err := sc.GetMasterAddrByName(ctx, masterName).Result()
	if err != nil {
		t.Fatalf("SENTINEL get-master-addr-by-name: %v\n%s", err, sentinel.out.String())
	}
	if len(addr) != 2 || addr[1] != strconv.Itoa(master.port) {
		t.Fatalf("sentinel names master %v, want port %d", addr, master.port)
	}

	cache := metrics.NewCache(nil)
	secret := map[string][]byte{
		config.EnvSentinelAddrs:    []byte(" " + sentinel.addr() + " ,"),
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
	direct := redis.NewClient(&redis.Options{Addr: master.addr(), Password: testPassword, DB: 2})
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
