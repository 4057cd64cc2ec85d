package image_test

import (
	"context"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/incusops/redis-sentinel-operator/test/harness"
)

// BenchmarkLeaderHandover: two replicas of the shipped image; the leader is
// stopped, alternately with SIGTERM (a rolling update: it releases the
// lease) and SIGKILL (a crashed node: the lease must expire), and the time
// until the other replica holds the lease is measured. The stopped replica
// is started again as the next standby. BENCH_HANDOVER_ROUNDS (3) of each.
func BenchmarkLeaderHandover(b *testing.B) {
	s := harness.Deploy(b)
	ctx := context.Background()
	pods := []*harness.Pod{s.Run(b, harness.PodOptions{Name: podName("bench-a")}), s.RunSecond(b, podName("bench-b"))}
	for _, p := range pods {
		harness.Eventually(b, time.Minute, p.Name+" ready", func() (bool, string) { return probe(p, "/readyz") }, nil)
	}
	lease := s.WaitLeader(b, time.Minute, nil)
	leader := 0
	if !pods[0].Leads(lease) {
		leader = 1
	}

	rounds := 3
	if v, err := strconv.Atoi(os.Getenv("BENCH_HANDOVER_ROUNDS")); err == nil && v > 0 {
		rounds = v
	}
	times := map[string][]float64{}
	for round := range rounds {
		variants := []string{"term", "kill"}
		if round%2 == 1 {
			slices.Reverse(variants)
		}
		for _, v := range variants {
			old, next := pods[leader], pods[1-leader]
			start := time.Now()
			var err error
			if v == "term" {
				err = old.Stop(ctx, 10*time.Second)
			} else {
				err = old.Kill(ctx)
			}
			if err != nil {
				b.Fatal(err)
			}
			s.WaitLeader(b, time.Minute, next)
			took := time.Since(start)
			times[v] = append(times[v], took.Seconds())
			b.Logf("round %d: leader %s stopped with SIG%s, %s holds the lease %.2f s later", round+1, old.Name, map[string]string{"term": "TERM", "kill": "KILL"}[v], next.Name, took.Seconds())
			if err := old.Start(ctx); err != nil {
				b.Fatal(err)
			}
			harness.Eventually(b, time.Minute, old.Name+" ready again", func() (bool, string) { return probe(old, "/readyz") }, nil)
			leader = 1 - leader
		}
	}
	for v, ts := range times {
		slices.Sort(ts)
		b.ReportMetric(ts[len(ts)/2], "handover-"+v+"-median-s")
		b.ReportMetric(ts[len(ts)-1], "handover-"+v+"-max-s")
		b.ReportMetric(float64(len(ts)), "handover-"+v+"-runs")
	}
	b.ReportMetric(float64(*lease.Spec.LeaseDurationSeconds), "lease-duration-s")
}
