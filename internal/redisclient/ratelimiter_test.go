package redisclient

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"

	"github.com/incusops/redis-sentinel-operator/internal/metrics"
)

// fallbackLimiter is the seed's rate-limiter pattern in miniature: a fixed
// window counter in Redis (INCR + PEXPIRE in one EVAL), and an in-memory
// counter when Redis errors, so the limiter always answers. The hook counts
// the Redis answers as hits and the errors (fallbacks) as misses.
type fallbackLimiter struct {
	rdb    redis.Cmdable
	limit  int64
	window time.Duration

	mu    sync.Mutex
	local map[string]*localWindow
}

type localWindow struct {
	count int64
	reset time.Time
}

// incrExpire is sent with EVAL (not EVALSHA: go-redis's Script.Run would
// first fail with NOSCRIPT, which the hook would rightly count as a miss).
const incrExpire = `local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return n`

// Allow reports whether one more request for key fits in the window, and
// whether Redis answered.
func (l *fallbackLimiter) Allow(ctx context.Context, key string) (allowed, fromRedis bool) {
	ctx = WithSubsystem(ctx, "rate_limiter")
	n, err := l.rdb.Eval(ctx, incrExpire, []string{"rl:" + key}, l.window.Milliseconds()).Int64()
	if err == nil {
		return n <= l.limit, true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	w := l.local[key]
	if w == nil || now.After(w.reset) {
		w = &localWindow{reset: now.Add(l.window)}
		l.local[key] = w
	}
	w.count++
	return w.count <= l.limit, false
}

func TestRateLimiterFallsBackWhenRedisIsDown(t *testing.T) {
	p := ownRedis(t)

	cache := metrics.NewCache(nil)
	opts := fastFail
	opts.Metrics = cache
	c, err := New(singleConfig(p.Addr(), testPassword), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	l := &fallbackLimiter{rdb: c, limit: 3, window: time.Minute, local: map[string]*localWindow{}}
	ctx := context.Background()
	hits := cache.HitCounter(metrics.SubsystemRateLimiter)
	misses := cache.MissCounter(metrics.SubsystemRateLimiter)

	var got []bool
	for i := 0; i < 4; i++ {
		ok, fromRedis := l.Allow(ctx, "user-1")
		if !fromRedis {
			t.Fatalf("request %d did not reach Redis", i)
		}
		got = append(got, ok)
	}
	if want := []bool{true, true, true, false}; !equalBools(got, want) {
		t.Fatalf("Redis-backed answers = %v, want %v", got, want)
	}
	if h, m := testutil.ToFloat64(hits), testutil.ToFloat64(misses); h != 4 || m != 0 {
		t.Fatalf("hits/misses with Redis up = %v/%v, want 4/0", h, m)
	}

	p.Stop() // Redis goes down.

	got = got[:0]
	for i := 0; i < 4; i++ {
		ok, fromRedis := l.Allow(ctx, "user-1")
		if fromRedis {
			t.Fatalf("request %d claims Redis answered after it stopped", i)
		}
		got = append(got, ok)
	}
	if want := []bool{true, true, true, false}; !equalBools(got, want) {
		t.Fatalf("fallback answers = %v, want %v", got, want)
	}
	if h, m := testutil.ToFloat64(hits), testutil.ToFloat64(misses); h != 4 || m != 4 {
		t.Fatalf("hits/misses with Redis down = %v/%v, want 4/4", h, m)
	}
}

func equalBools(a, b []bool) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
