package image_test

import (
	"context"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"k8s.io/utils/ptr"

	"github.com/incusops/redis-sentinel-operator/test/harness"
)

// BenchmarkLeaderHandover: the shipped Deployment at two replicas on two
// nodes; the leader is stopped, alternately by deleting its pod (a rolling
// update or a drain: the kubelet sends SIGTERM and the manager releases the
// lease) and by SIGKILLing its manager (a crash: the lease must expire),
// and the time until a new holder has the lease is measured. The Deployment
// is back at two Ready pods before the next round. BENCH_HANDOVER_ROUNDS
// (3) of each.
func BenchmarkLeaderHandover(b *testing.B) {
	s := harness.Deploy(b)
	s.Scale(b, 2)
	s.WaitAvailable(b, 2)
	rounds := 3
	if v, err := strconv.Atoi(os.Getenv("BENCH_HANDOVER_ROUNDS")); err == nil && v > 0 {
		rounds = v
	}
	times := map[string][]float64{}
	var lease int32
	for round := range rounds {
		variants := []string{"term", "kill"}
		if round%2 == 1 {
			slices.Reverse(variants)
		}
		for _, v := range variants {
			leader := s.LeaderPod(b)
			l := s.Lease(b)
			lease = *l.Spec.LeaseDurationSeconds
			start := time.Now()
			if v == "term" {
				if err := s.K8s.Delete(context.Background(), leader); err != nil {
					b.Fatal(err)
				}
			} else {
				s.KillManager(b, leader)
			}
			s.WaitLeader(b, time.Minute, ptr.Deref(l.Spec.HolderIdentity, ""))
			took := time.Since(start)
			times[v] = append(times[v], took.Seconds())
			b.Logf("round %d: leader %s stopped (%s); a new holder has the lease %.2f s later", round+1, leader.Name, map[string]string{"term": "pod deleted, SIGTERM", "kill": "manager SIGKILLed"}[v], took.Seconds())
			s.WaitAvailable(b, 2)
		}
	}
	for v, ts := range times {
		slices.Sort(ts)
		b.ReportMetric(ts[len(ts)/2], "handover-"+v+"-median-s")
		b.ReportMetric(ts[len(ts)-1], "handover-"+v+"-max-s")
		b.ReportMetric(float64(len(ts)), "handover-"+v+"-runs")
	}
	b.ReportMetric(float64(lease), "lease-duration-s")
}
