package redisclient

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"

	"github.com/incusops/redis-sentinel-operator/internal/config"
	"github.com/incusops/redis-sentinel-operator/internal/metrics"
	"github.com/incusops/redis-sentinel-operator/internal/testenv"
)

// counts is hits and misses per subsystem label.
type counts map[string][2]float64

func readCounts(c *metrics.Cache) counts {
	out := counts{}
	for _, name := range metrics.Subsystems() {
		s := metrics.ParseSubsystem(name)
		h := testutil.ToFloat64(c.HitCounter(s))
		m := testutil.ToFloat64(c.MissCounter(s))
		if h != 0 || m != 0 {
			out[name] = [2]float64{h, m}
		}
	}
	return out
}

func assertCounts(t *testing.T, c *metrics.Cache, want counts) {
	t.Helper()
	got := readCounts(c)
	if len(got) != len(want) {
		t.Fatalf("counts = %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("counts = %v, want %v", got, want)
		}
	}
}

func singleConfig(addr, password string) config.Redis {
	return config.Redis{Network: "tcp", Addr: addr, Password: password}
}

// newInstrumented returns a client on the shared server and its own counters,
// registered on a fresh registry.
func newInstrumented(t *testing.T, opts Options) (*redis.Client, *metrics.Cache, *prometheus.Registry) {
	t.Helper()
	srv := needRedis(t)
	reg := prometheus.NewRegistry()
	cache := metrics.NewCache(reg)
	opts.Metrics = cache
	c, err := New(singleConfig(srv.Addr(), testPassword), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c, cache, reg
}

func TestHookCountsAgainstRealRedis(t *testing.T) {
	c, cache, reg := newInstrumented(t, Options{})
	bg := context.Background()

	// A GET of a missing key is a hit (redis.Nil); the connection handshake
	// (HELLO with AUTH) that this first command triggers is not counted.
	presence := WithSubsystem(bg, "presence")
	if err := c.Get(presence, "hook-test:missing").Err(); !errors.Is(err, redis.Nil) {
		t.Fatalf("GET missing = %v, want redis.Nil", err)
	}
	assertCounts(t, cache, counts{"presence": {1, 0}})

	// SET then GET: two hits.
	rl := WithSubsystem(bg, "rate_limiter")
	if err := c.Set(rl, "hook-test:k", "v", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	if v, err := c.Get(rl, "hook-test:k").Result(); err != nil || v != "v" {
		t.Fatalf("GET = %q, %v", v, err)
	}
	assertCounts(t, cache, counts{"presence": {1, 0}, "rate_limiter": {2, 0}})

	// Unknown subsystem names and a bare context count under "other".
	if err := c.Get(WithSubsystem(bg, "no-such-subsystem"), "hook-test:k").Err(); err != nil {
		t.Fatal(err)
	}
	if err := c.Ping(bg).Err(); err != nil {
		t.Fatal(err)
	}
	assertCounts(t, cache, counts{"presence": {1, 0}, "rate_limiter": {2, 0}, "other": {2, 0}})
	if got := SubsystemFrom(WithSubsystem(bg, "no-such-subsystem")); got != "other" {
		t.Errorf("SubsystemFrom = %q", got)
	}

	// A server-side error (INCR of a non-integer) is a miss.
	if err := c.Incr(rl, "hook-test:k").Err(); err == nil {
		t.Fatal("INCR of a string succeeded")
	}
	assertCounts(t, cache, counts{"presence": {1, 0}, "rate_limiter": {2, 1}, "other": {2, 0}})

	// Pipelines count each command: PUBLISH, GET (nil), INCR (error).
	chat := WithSubsystem(bg, "chat_pubsub")
	_, err := c.Pipelined(chat, func(p redis.Pipeliner) error {
		p.Publish(chat, "hook-test:chan", "hello")
		p.Get(chat, "hook-test:missing")
		p.Incr(chat, "hook-test:k")
		return nil
	})
	if err == nil {
		t.Fatal("pipeline with a failing INCR returned no error")
	}
	assertCounts(t, cache, counts{"presence": {1, 0}, "rate_limiter": {2, 1}, "other": {2, 0}, "chat_pubsub": {2, 1}})

	// Transactions count their commands, not MULTI/EXEC.
	if _, err := c.TxPipelined(presence, func(p redis.Pipeliner) error {
		p.Set(presence, "hook-test:tx", "1", time.Minute)
		p.Expire(presence, "hook-test:tx", time.Minute)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	assertCounts(t, cache, counts{"presence": {3, 0}, "rate_limiter": {2, 1}, "other": {2, 0}, "chat_pubsub": {2, 1}})

	// The registry exposes the same numbers, with every known subsystem
	// present from the start.
	n, err := testutil.GatherAndCount(reg, metrics.CacheHitsTotal, metrics.CacheMissesTotal)
	if err != nil {
		t.Fatal(err)
	}
	if want := 2 * len(metrics.Subsystems()); n != want {
		t.Errorf("series = %d, want %d", n, want)
	}
}

// closedAddr returns a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	port, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return "127.0.0.1:" + strconv.Itoa(port)
}

// fastFail makes a dead server fail fast: no command retries, one re-dial.
var fastFail = Options{MaxRetries: -1, DialerRetries: 1, DialTimeout: 200 * time.Millisecond}

func TestHookMissWhenServerUnreachable(t *testing.T) {
	cache := metrics.NewCache(prometheus.NewRegistry())
	opts := fastFail
	opts.Metrics = cache
	c, err := New(singleConfig(closedAddr(t), testPassword), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	ctx := WithSubsystem(context.Background(), "presence")
	if err := c.Get(ctx, "k").Err(); err == nil || errors.Is(err, redis.Nil) {
		t.Fatalf("GET on a closed port = %v, want a connection error", err)
	}
	assertCounts(t, cache, counts{"presence": {0, 1}})

	if _, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Get(ctx, "a")
		p.Get(ctx, "b")
		return nil
	}); err == nil {
		t.Fatal("pipeline on a closed port succeeded")
	}
	assertCounts(t, cache, counts{"presence": {0, 3}})
}

func TestHookMissOnWrongPassword(t *testing.T) {
	srv := needRedis(t)
	cache := metrics.NewCache(nil)
	opts := fastFail
	opts.Metrics = cache
	c, err := New(singleConfig(srv.Addr(), "wrong-password"), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := WithSubsystem(context.Background(), "canary")
	if err := c.Get(ctx, "k").Err(); err == nil {
		t.Fatal("GET with a wrong password succeeded")
	}
	assertCounts(t, cache, counts{"canary": {0, 1}})
}

func TestHookMissOnStoppedServer(t *testing.T) {
	p := ownRedis(t)
	cache := metrics.NewCache(nil)
	opts := fastFail
	opts.Metrics = cache
	c, err := New(singleConfig(p.Addr(), testPassword), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := WithSubsystem(context.Background(), "chat_pubsub")
	if err := c.Publish(ctx, "ch", "m").Err(); err != nil {
		t.Fatal(err)
	}
	p.Stop()
	// The pooled connection is dead and re-dialing is refused.
	if err := c.Publish(ctx, "ch", "m").Err(); err == nil {
		t.Fatal("PUBLISH on a stopped server succeeded")
	}
	assertCounts(t, cache, counts{"chat_pubsub": {1, 1}})
}

func TestCanary(t *testing.T) {
	c, cache, _ := newInstrumented(t, Options{})
	d, err := Canary(context.Background(), c, "")
	if err != nil {
		t.Fatal(err)
	}
	if d <= 0 {
		t.Errorf("latency = %v", d)
	}
	assertCounts(t, cache, counts{"canary": {2, 0}})
	ttl, err := c.PTTL(WithSubsystem(context.Background(), "canary"), DefaultCanaryKey).Result()
	if err != nil || ttl <= 0 || ttl > CanaryTTL {
		t.Errorf("canary key TTL = %v, %v", ttl, err)
	}

	down, err := New(singleConfig(closedAddr(t), ""), Options{MaxRetries: -1, DialerRetries: 1, Metrics: cache})
	if err != nil {
		t.Fatal(err)
	}
	defer down.Close()
	if _, err := Canary(context.Background(), down, "x"); err == nil {
		t.Fatal("canary against a closed port succeeded")
	}
	assertCounts(t, cache, counts{"canary": {3, 1}})
}

func TestFromSecretDataSingleInstance(t *testing.T) {
	srv := needRedis(t)
	cache := metrics.NewCache(nil)
	c, err := FromSecretData(map[string][]byte{
		config.EnvURL: []byte("redis://:" + testPassword + "@" + srv.Addr() + "/1"),
	}, Options{Metrics: cache})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := Canary(context.Background(), c, "secret-single"); err != nil {
		t.Fatal(err)
	}
	if db := c.Options().DB; db != 1 {
		t.Errorf("DB = %d", db)
	}
}

func TestFromEnvAndBadSecret(t *testing.T) {
	_, err := FromSecretData(map[string][]byte{
		config.EnvSentinelAddrs: []byte("127.0.0.1:0"),
		config.EnvURL:           []byte("redis://:" + testPassword + "@dummy:6379/x"),
	}, Options{})
	if err == nil {
		t.Fatal("bad secret accepted")
	}
	for _, s := range []string{config.EnvSentinelAddrs, config.EnvMasterName, config.EnvURL} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not name %s", err, s)
		}
	}
	if strings.Contains(err.Error(), testPassword) {
		t.Errorf("error leaks the password: %v", err)
	}

	env := map[string]string{config.EnvURL: "redis://127.0.0.1:6379/0"}
	c, err := FromEnv(func(k string) string { return env[k] }, Options{})
	if err != nil {
		t.Fatal(err)
	}
	o := c.Options()
	if o.DialTimeout != DefaultDialTimeout || o.ReadTimeout != DefaultReadTimeout || o.WriteTimeout != DefaultWriteTimeout {
		t.Errorf("timeouts = %v/%v/%v", o.DialTimeout, o.ReadTimeout, o.WriteTimeout)
	}
	_ = c.Close()

	if _, err := New(config.Redis{}, Options{}); err == nil {
		t.Error("New with an empty config succeeded")
	}
}

// TestHookDoesNotAllocate checks the hot path of the hook alone.
func TestHookDoesNotAllocate(t *testing.T) {
	cache := metrics.NewCache(nil)
	h := NewHook(cache)
	process := h.ProcessHook(func(ctx context.Context, cmd redis.Cmder) error { return nil })
	pipeline := h.ProcessPipelineHook(func(ctx context.Context, cmds []redis.Cmder) error { return nil })
	ctx := WithSubsystem(context.Background(), "presence")
	cmd := redis.NewStringCmd(ctx, "get", "k")
	cmds := []redis.Cmder{cmd, redis.NewStatusCmd(ctx, "set", "k", "v")}
	if n := testing.AllocsPerRun(1000, func() { _ = process(ctx, cmd) }); n != 0 {
		t.Errorf("ProcessHook allocates %v times per call", n)
	}
	if n := testing.AllocsPerRun(1000, func() { _ = pipeline(ctx, cmds) }); n != 0 {
		t.Errorf("ProcessPipelineHook allocates %v times per call", n)
	}
	if got := testutil.ToFloat64(cache.HitCounter(metrics.SubsystemPresence)); got != 3*1001 {
		// AllocsPerRun runs the function once more as a warm-up.
		t.Errorf("hits = %v", got)
	}
}
