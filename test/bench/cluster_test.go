package bench

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	redisv1alpha1 "github.com/incusops/redis-sentinel-operator/api/v1alpha1"
	"github.com/incusops/redis-sentinel-operator/controllers"
	"github.com/incusops/redis-sentinel-operator/internal/testenv"
	"github.com/incusops/redis-sentinel-operator/test/harness"
)

// BenchmarkCluster measures formations on the cluster lab (`make
// lab-cluster`: three Incus cluster members cache-01..03 in nested hosts,
// members on the macvlan network rsfmv, placement spread Required), under
// one manager reaching the cluster at cache-01 with the others as
// fallbacks:
//   - apply -> Ready, BENCH_CLUSTER_APPLY (3) formations one at a time
//     (each deleted, its containers gone, before the next);
//   - kill host -> status: BENCH_CLUSTER_KILLS (2) times, the node holding
//     the master is hard-stopped (`incus stop --force` of the nested host)
//     and the time until status.master names another member is taken;
//     then the node is started again and the formation waited Ready and
//     spread (replaceAfter unset: the member waits for its host);
//   - evacuation: BENCH_CLUSTER_EVACUATIONS (2) times, `incus cluster
//     evacuate` of the master's host under a SET + WAIT 1 writer: the
//     longest write gap (target <= 2 s), acknowledged writes lost (target
//     0) and master switches (target 1 each); then `incus cluster restore`.
func BenchmarkCluster(b *testing.B) {
	needAPI(b)
	ctx := context.Background()
	lab, err := harness.NewClusterLab(ctx)
	if err != nil {
		testenv.Check(b, "the cluster lab (make lab-cluster)", err)
	}
	if err := lab.WaitMembersOnline(ctx); err != nil {
		b.Fatal(err)
	}
	applies, kills, evacuations := envInt("BENCH_CLUSTER_APPLY", 3), envInt("BENCH_CLUSTER_KILLS", 2), envInt("BENCH_CLUSTER_EVACUATIONS", 2)
	ns := benchNamespace(b, "bench-cluster")
	host := clusterHost(b, lab, ns)
	deps, _ := realDeps(b)
	startManager(b, []string{ns}, defaultOptions(), deps)
	tr := newTracker(b, true)
	formation := func(name string) *redisv1alpha1.RedisSentinelFormation {
		f := newFormation(ns, name)
		f.Spec.Incus.HostRef, f.Spec.Incus.Network = host, "rsfmv"
		tr.create(b, f)
		return f
	}
	gone := func(f *redisv1alpha1.RedisSentinelFormation) {
		if err := deleteAndWait([]*redisv1alpha1.RedisSentinelFormation{f}, false, 5*time.Minute); err != nil {
			b.Fatal(err)
		}
		tr.forget(f)
		waitFor(b, 3*time.Minute, "the formation's containers gone from the cluster", func() (bool, string) {
			left, err := lab.InstanceLocations(ctx, "user.rsf.formation-uid", string(f.UID))
			return err == nil && len(left) == 0, fmt.Sprint(left, err)
		})
	}

	var ready []time.Duration
	for i := range applies {
		f := formation(fmt.Sprintf("%s-apply-%d", ns, i+1))
		start := time.Now()
		if _, err := waitReady(ns, []*redisv1alpha1.RedisSentinelFormation{f}, 50*time.Millisecond, 10*time.Minute); err != nil {
			b.Fatal(err)
		}
		ready = append(ready, time.Since(start))
		b.Logf("apply %d: Ready on the cluster after %s", i+1, ready[i].Round(10*time.Millisecond))
		gone(f)
	}

	f := formation(ns + "-drills")
	if _, err := waitReady(ns, []*redisv1alpha1.RedisSentinelFormation{f}, 250*time.Millisecond, 10*time.Minute); err != nil {
		b.Fatal(err)
	}
	spreadAndReady := func(what string) *redisv1alpha1.RedisSentinelFormation {
		var cur *redisv1alpha1.RedisSentinelFormation
		waitFor(b, 5*time.Minute, what, func() (bool, string) {
			cur = &redisv1alpha1.RedisSentinelFormation{}
			if err := k8s.Get(ctx, client.ObjectKeyFromObject(f), cur); err != nil {
				return false, err.Error()
			}
			return isReady(cur) && meta.IsStatusConditionTrue(cur.Status.Conditions, redisv1alpha1.ConditionSpread), fmt.Sprint(cur.Status.Phase, cur.Status.Conditions)
		})
		return cur
	}

	var toStatus []time.Duration
	for i := range kills {
		cur := spreadAndReady("Ready and spread before the host is stopped")
		master := cur.Status.Master.Member
		node := memberLocation(cur, master)
		killedAt := time.Now()
		if err := lab.StopNode(ctx, node); err != nil {
			b.Fatal(err)
		}
		waitFor(b, 3*time.Minute, "status names a new master", func() (bool, string) {
			now := &redisv1alpha1.RedisSentinelFormation{}
			if err := k8s.Get(ctx, client.ObjectKeyFromObject(f), now); err != nil || now.Status.Master == nil || now.Status.Master.Member == master {
				return false, fmt.Sprint(err)
			}
			toStatus = append(toStatus, time.Since(killedAt))
			return true, ""
		})
		b.Logf("kill host %d: %s (master %s) hard-stopped, status named a new master after %s", i+1, node, master, toStatus[i].Round(10*time.Millisecond))
		if err := lab.StartNode(ctx, node); err != nil {
			b.Fatal(err)
		}
		if err := lab.WaitMembersOnline(ctx); err != nil {
			b.Fatal(err)
		}
	}

	var gaps []time.Duration
	lost, badSwitches := 0, 0
	for i := range evacuations {
		cur := spreadAndReady("Ready and spread before the evacuation")
		node := memberLocation(cur, cur.Status.Master.Member)
		w, err := harness.StartWriter(ctx, k8s, f, harness.WriterOptions{})
		if err != nil {
			b.Fatal(err)
		}
		time.Sleep(2 * time.Second)
		w.ResetGap()
		if err := lab.Evacuate(ctx, node); err != nil {
			b.Fatal(err)
		}
		var after *redisv1alpha1.RedisSentinelFormation
		waitFor(b, 3*time.Minute, "Ready with the master off the evacuated host", func() (bool, string) {
			after = &redisv1alpha1.RedisSentinelFormation{}
			if err := k8s.Get(ctx, client.ObjectKeyFromObject(f), after); err != nil {
				return false, err.Error()
			}
			return isReady(after) && memberLocation(after, after.Status.Master.Member) != node, after.Status.Master.Member
		})
		st := w.Stop()
		missing, err := w.Lost(ctx, k8s, f)
		if err != nil {
			b.Fatal(err)
		}
		switches := after.Status.Failovers - cur.Status.Failovers
		gaps, lost = append(gaps, st.LongestGap), lost+len(missing)
		if switches != 1 {
			badSwitches++
		}
		b.Logf("evacuation %d of %s: master %s -> %s, %d switch(es), %d acknowledged, %d lost, longest gap %s",
			i+1, node, cur.Status.Master.Member, after.Status.Master.Member, switches, st.Acknowledged, len(missing), st.LongestGap.Round(time.Millisecond))
		if err := lab.Restore(ctx, node); err != nil {
			b.Fatal(err)
		}
	}
	spreadAndReady("Ready and spread after the last restore")

	b.ReportMetric(median(ready).Seconds(), "cluster-apply-median-s")
	b.ReportMetric(maxOf(ready).Seconds(), "cluster-apply-max-s")
	b.ReportMetric(float64(len(ready)), "cluster-apply-runs")
	b.ReportMetric(median(toStatus).Seconds(), "cluster-kill-status-median-s")
	b.ReportMetric(maxOf(toStatus).Seconds(), "cluster-kill-status-max-s")
	b.ReportMetric(float64(len(toStatus)), "cluster-kills")
	b.ReportMetric(maxOf(gaps).Seconds(), "cluster-evacuation-gap-max-s")
	b.ReportMetric(float64(lost), "cluster-evacuation-lost")
	b.ReportMetric(float64(badSwitches), "cluster-evacuation-bad-switches")
	b.ReportMetric(float64(len(gaps)), "cluster-evacuations")
}

// clusterHost creates an IncusHost for the cluster lab admitting ns, with
// a client certificate the cluster trusts for the benchmark's duration.
func clusterHost(b *testing.B, lab *harness.ClusterLab, ns string) string {
	b.Helper()
	ctx := context.Background()
	name := ns
	cert, key := lab.TrustedClient(b, "rsf-bench-"+name)
	if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: controllers.DefaultOperatorNamespace}}); client.IgnoreAlreadyExists(err) != nil {
		b.Fatal(err)
	}
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name + "-client", Namespace: controllers.DefaultOperatorNamespace}, Type: corev1.SecretTypeTLS,
		Data: map[string][]byte{corev1.TLSCertKey: cert, corev1.TLSPrivateKeyKey: key}}
	if err := k8s.Create(ctx, secret); err != nil {
		b.Fatal(err)
	}
	h := &redisv1alpha1.IncusHost{ObjectMeta: metav1.ObjectMeta{Name: name}}
	h.Spec.Remote = &redisv1alpha1.IncusHostRemote{URL: lab.URLs[0], FallbackURLs: lab.URLs[1:], ClientCertificateSecretName: secret.Name, ServerCertificate: string(lab.ServerCert)}
	h.Spec.NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{corev1.LabelMetadataName: ns}}
	h.Spec.Allowed = redisv1alpha1.IncusHostAllowlist{Projects: []string{"default"}, Profiles: []string{"rsf-redis"}, Networks: []string{"rsfmv"},
		StoragePools: []string{"rsf"}, Images: []string{"rsf-redis7-bookworm-v1", "rsf-valkey8-bookworm-v1"}}
	if err := k8s.Create(ctx, h); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = k8s.Delete(context.Background(), h)
		_ = k8s.Delete(context.Background(), secret)
	})
	return name
}

func memberLocation(f *redisv1alpha1.RedisSentinelFormation, name string) string {
	for _, m := range f.Status.Members {
		if m.Name == name {
			return m.Location
		}
	}
	return ""
}

// waitFor polls cond every 100 ms until it holds, failing b after timeout
// with cond's last word.
func waitFor(b *testing.B, timeout time.Duration, what string, cond func() (bool, string)) {
	b.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, last := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("%s: not after %s (%s)", what, timeout, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
