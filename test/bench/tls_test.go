package bench

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	redisv1alpha1 "github.com/incusops/redis-sentinel-operator/api/v1alpha1"
	"github.com/incusops/redis-sentinel-operator/internal/redisclient"
	"github.com/incusops/redis-sentinel-operator/test/harness"
)

// tlsVariant is one of BenchmarkTLS's two formations.
type tlsVariant struct {
	tag string // "plain" or "tls", in the metric names
	f   *redisv1alpha1.RedisSentinelFormation
}

// BenchmarkTLS runs a plaintext formation and one with TLS (clientAuth
// Required, the operator's CA) side by side, both with the defaults
// (down-after 5000 ms), each in its own namespace, under one manager:
//   - SET + GET round trips through the connection Secret's client, the
//     two formations alternating in batches of 100 (which goes first
//     alternates too) until each had BENCH_TLS_RTT (20000) round trips, on
//     warm connections: median and p99 per variant, ratio TLS / plain of
//     the medians. Beside it, the first PING of a fresh client (Sentinel
//     discovery, dials, handshakes, AUTH), BENCH_TLS_FRESH (10) per
//     variant, alternating.
//   - kill -> status.master changes (killMaster), BENCH_TLS_DRILLS (5)
//     drills per variant and failover path (fast path, then Sentinel alone
//     at down-after 5000 ms, which is what runs over the sentinels' TLS
//     links), the variants alternating; medians and TLS - plain.
func BenchmarkTLS(b *testing.B) {
	needStack(b)
	ctx := context.Background()
	rtts := envInt("BENCH_TLS_RTT", 20000)
	fresh := envInt("BENCH_TLS_FRESH", 10)
	drills := envInt("BENCH_TLS_DRILLS", 5)

	nsPlain, nsTLS := benchNamespace(b, "bench-plain"), benchNamespace(b, "bench-tls")
	deps, _ := realDeps(b)
	startManager(b, []string{nsPlain, nsTLS}, defaultOptions(), deps)
	tr := newTracker(b, true)
	plain, withTLS := newFormation(nsPlain, nsPlain), newFormation(nsTLS, nsTLS)
	withTLS.Spec.TLS = &redisv1alpha1.TLSSpec{Enabled: true, ClientAuth: redisv1alpha1.ClientAuthRequired}
	variants := []tlsVariant{{"plain", plain}, {"tls", withTLS}}
	for _, v := range variants {
		tr.create(b, v.f)
	}
	for _, v := range variants {
		if _, err := waitReady(v.f.Namespace, []*redisv1alpha1.RedisSentinelFormation{v.f}, 250*time.Millisecond, 10*time.Minute); err != nil {
			b.Fatal(err)
		}
	}

	// Round trips.
	start := time.Now()
	clients := make([]*redis.Client, len(variants))
	for i, v := range variants {
		c, err := harness.ConnectionClient(ctx, k8s, v.f, redisclient.Options{})
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		clients[i] = c
	}
	getSet := func(c *redis.Client, key string) time.Duration {
		t0 := time.Now()
		if err := c.Set(ctx, key, "value", 0).Err(); err != nil {
			b.Fatal(err)
		}
		if err := c.Get(ctx, key).Err(); err != nil {
			b.Fatal(err)
		}
		return time.Since(t0)
	}
	for i, v := range variants { // warm-up: discovery and handshakes done
		for range 200 {
			getSet(clients[i], "bench:tls:"+v.tag)
		}
	}
	const batch = 100
	times := make([][]time.Duration, len(variants))
	for round := 0; round*batch < rtts; round++ {
		for k := range variants {
			i := (k + round) % len(variants)
			for range min(batch, rtts-round*batch) {
				times[i] = append(times[i], getSet(clients[i], "bench:tls:"+variants[i].tag))
			}
		}
	}
	firstPing := make([][]time.Duration, len(variants))
	for round := range fresh {
		for k := range variants {
			i := (k + round) % len(variants)
			t0 := time.Now()
			c, err := harness.ConnectionClient(ctx, k8s, variants[i].f, redisclient.Options{})
			if err != nil {
				b.Fatal(err)
			}
			t1 := time.Now() // the Secret read is not the client's work
			err = c.Ping(ctx).Err()
			d := time.Since(t1)
			_ = c.Close()
			if err != nil {
				b.Fatalf("%s: a fresh client's PING: %v (after %s)", variants[i].tag, err, time.Since(t0))
			}
			firstPing[i] = append(firstPing[i], d)
		}
	}
	for i, v := range variants {
		b.Logf("%s: SET+GET median %s, p99 %s over %d; fresh client's first PING median %s, max %s over %d",
			v.tag, median(times[i]), percentile(times[i], 99), len(times[i]), median(firstPing[i]).Round(10*time.Microsecond), maxOf(firstPing[i]).Round(10*time.Microsecond), fresh)
		b.ReportMetric(float64(median(times[i]).Nanoseconds()), "tls-rtt-"+v.tag+"-median-ns")
		b.ReportMetric(float64(percentile(times[i], 99).Nanoseconds()), "tls-rtt-"+v.tag+"-p99-ns")
		b.ReportMetric(median(firstPing[i]).Seconds()*1000, "tls-first-ping-"+v.tag+"-median-ms")
	}
	b.ReportMetric(float64(median(times[1]))/float64(median(times[0])), "tls-rtt-ratio")
	b.ReportMetric(float64(rtts), "tls-rtt-n")
	b.Logf("round trips and fresh clients took %s", time.Since(start).Round(time.Second))

	// kill -> status, per path, the variants alternating (which goes first
	// too) so that both see the same machine.
	b.ReportMetric(float64(drills), "tls-drills")
	fs, tags := []*redisv1alpha1.RedisSentinelFormation{plain, withTLS}, []string{"plain", "tls"}
	for _, path := range failoverPaths {
		toStatus := alternatingDrills(b, tags, fs, drills, path)
		for i, tag := range tags {
			b.ReportMetric(median(toStatus[i]).Seconds(), fmt.Sprintf("tls-%s-kill-status-%s-median-s", path.tag, tag))
		}
		b.ReportMetric((median(toStatus[1]) - median(toStatus[0])).Seconds(), "tls-"+path.tag+"-kill-status-diff-s")
	}
}
