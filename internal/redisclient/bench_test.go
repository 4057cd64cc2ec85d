package redisclient

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/incusops/redis-sentinel-operator/internal/metrics"
)

// BenchmarkGetSet compares a SET + GET round trip on the shared loopback
// redis-server through a plain go-redis client and through the same client
// with the metrics hook. Both are built by New with the same options; only
// the hook differs.
//
//	go test -run '^$' -bench GetSet -count 6 ./internal/redisclient/
func BenchmarkGetSet(b *testing.B) {
	srv := needRedis(b)
	cfg := singleConfig(srv.Addr(), testPassword)

	plain, err := New(cfg, Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer plain.Close()
	instrumented, err := New(cfg, Options{Metrics: metrics.NewCache(nil)})
	if err != nil {
		b.Fatal(err)
	}
	defer instrumented.Close()

	run := func(c *redis.Client) func(*testing.B) {
		return func(b *testing.B) {
			ctx := WithSubsystem(context.Background(), "presence")
			if err := c.Ping(ctx).Err(); err != nil { // dial outside the timer
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := c.Set(ctx, "bench:k", "value", 0).Err(); err != nil {
					b.Fatal(err)
				}
				if err := c.Get(ctx, "bench:k").Err(); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
	b.Run("plain", run(plain))
	b.Run("instrumented", run(instrumented))
}

// BenchmarkHook measures the hook alone (no network): the cost it adds to
// every command.
func BenchmarkHook(b *testing.B) {
	h := NewHook(metrics.NewCache(nil))
	process := h.ProcessHook(func(ctx context.Context, cmd redis.Cmder) error { return nil })
	ctx := WithSubsystem(context.Background(), "presence")
	cmd := redis.NewStringCmd(ctx, "get", "k")
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		_ = process(ctx, cmd)
	}
}

// BenchmarkGetSetPaired interleaves the two clients, alternating which goes
// first, and times every SET + GET, so that load from other processes hits
// both alike; it reports the median round trip of each and the hook's
// overhead from the medians, in percent. (BenchmarkGetSet runs the two
// sub-benchmarks one after the other, which is what benchstat compares, but
// drifts on a busy machine.)
func BenchmarkGetSetPaired(b *testing.B) {
	srv := needRedis(b)
	cfg := singleConfig(srv.Addr(), testPassword)
	plain, err := New(cfg, Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer plain.Close()
	instrumented, err := New(cfg, Options{Metrics: metrics.NewCache(nil)})
	if err != nil {
		b.Fatal(err)
	}
	defer instrumented.Close()

	ctx := WithSubsystem(context.Background(), "presence")
	getSet := func(c *redis.Client) time.Duration {
		start := time.Now()
		if err := c.Set(ctx, "bench:k", "value", 0).Err(); err != nil {
			b.Fatal(err)
		}
		if err := c.Get(ctx, "bench:k").Err(); err != nil {
			b.Fatal(err)
		}
		return time.Since(start)
	}
	getSet(plain)
	getSet(instrumented)

	tPlain := make([]time.Duration, b.N)
	tInstr := make([]time.Duration, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if i%2 == 0 {
			tPlain[i] = getSet(plain)
			tInstr[i] = getSet(instrumented)
		} else {
			tInstr[i] = getSet(instrumented)
			tPlain[i] = getSet(plain)
		}
	}
	b.StopTimer()
	p, in := float64(median(tPlain)), float64(median(tInstr))
	b.ReportMetric(p, "plain-median-ns")
	b.ReportMetric(in, "instrumented-median-ns")
	b.ReportMetric(100*(in-p)/p, "overhead-%")
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}
