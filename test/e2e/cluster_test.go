package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
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

// clusterLabLabel is the namespace label the cluster lab's IncusHost
// admits.
const clusterLabLabel = "e2e.redis.incusops.io/cluster-lab"

// newClusterFormation creates an IncusHost for the cluster lab (`make
// lab-cluster`: three Incus cluster members in nested hosts, members on
// the macvlan network rsfmv), reached at its first member with the others
// as fallbacks, and a formation on it.
func newClusterFormation(t *testing.T, prefix string, mutate func(*redisv1alpha1.RedisSentinelFormation)) (*harness.ClusterLab, *redisv1alpha1.RedisSentinelFormation) {
	t.Helper()
	c := stack(t)
	ctx := context.Background()
	lab, err := harness.NewClusterLab(ctx)
	if err != nil {
		testenv.Check(t, "the cluster lab (make lab-cluster)", err)
	}
	waitCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := lab.WaitMembersOnline(waitCtx); err != nil {
		t.Fatalf("cluster lab: %v", err)
	}
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: operatorNamespace}}); client.IgnoreAlreadyExists(err) != nil {
		t.Fatal(err)
	}
	name := uniqueName(prefix)
	cert, key := lab.TrustedClient(t, "rsf-e2e-"+name)
	newRemoteHost(t, name, lab.URLs[0], cert, key, lab.ServerCert, func(h *redisv1alpha1.IncusHost) {
		h.Spec.Remote.FallbackURLs = lab.URLs[1:]
		h.Spec.NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{clusterLabLabel: name}}
		h.Spec.Allowed.Networks = []string{"rsfmv"}
	})
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{clusterLabLabel: name}}}); err != nil {
		t.Fatal(err)
	}
	// Registered first, so it runs last: after the formation's deletion.
	var f *redisv1alpha1.RedisSentinelFormation
	t.Cleanup(func() {
		if f == nil {
			return
		}
		eventually(t, 2*time.Minute, "the formation's instances deleted from the cluster", func() (bool, string) {
			left, err := lab.InstanceLocations(context.Background(), "user.rsf.formation-uid", string(f.UID))
			return err == nil && len(left) == 0, fmt.Sprint(left, err)
		})
	})
	f = newNamedFormation(t, name, formationOpts{mutate: func(f *redisv1alpha1.RedisSentinelFormation) {
		f.Spec.Incus.HostRef = name
		f.Spec.Incus.Network = "rsfmv"
		if mutate != nil {
			mutate(f)
		}
	}})
	return lab, f
}

// checkSpread checks that status and Incus (`incus list -c nL`) agree on
// where each member runs, and that the locations are distinct.
func checkSpread(t *testing.T, lab *harness.ClusterLab, f *redisv1alpha1.RedisSentinelFormation) map[string]string {
	t.Helper()
	cur := get(t, f)
	where, err := lab.InstanceLocations(context.Background(), "user.rsf.formation-uid", string(cur.UID))
	if err != nil {
		t.Fatal(err)
	}
	byMember := map[string]string{}
	seen := map[string]string{}
	for _, m := range cur.Status.Members {
		if m.Location == "" || where[m.Instance] != m.Location {
			t.Fatalf("member %s: status location %q, Incus %q (%v)", m.Name, m.Location, where[m.Instance], where)
		}
		if other, dup := seen[m.Location]; dup {
			t.Fatalf("members %s and %s share %s", other, m.Name, m.Location)
		}
		seen[m.Location], byMember[m.Name] = m.Name, m.Location
	}
	c := meta.FindStatusCondition(cur.Status.Conditions, redisv1alpha1.ConditionSpread)
	if c == nil || c.Status != metav1.ConditionTrue {
		t.Fatalf("Spread condition %+v", c)
	}
	return byMember
}

// TestClusterFormation runs one formation on the cluster lab through the
// ADR's cases: Ready spread over the three hosts; an evacuation of the
// master's host handled as a planned switchover under a WAIT-1 writer
// (one switch, nothing lost, a short gap), and the restore bringing the
// member back; the master's whole host hard-stopped under the writer (a
// new master, nothing lost, the member re-created elsewhere after
// replaceAfter, Ready with three members but not spread), and the host's
// return (the abandoned instance deleted, spread restored).
func TestClusterFormation(t *testing.T) {
	lab, f := newClusterFormation(t, "cluster", func(f *redisv1alpha1.RedisSentinelFormation) {
		f.Spec.Incus.Placement.ReplaceAfter = &metav1.Duration{Duration: 30 * time.Second}
	})
	start := time.Now()
	waitReady(t, f, 5*time.Minute)
	t.Logf("Ready on the cluster after %s", time.Since(start).Round(100*time.Millisecond))
	placed := checkSpread(t, lab, f)
	t.Logf("members on %v", placed)
	out := kubectl(t, "get", "rsf", "-n", f.Namespace, f.Name, "-o", "wide")
	if !strings.Contains(out, "SPREAD") || !strings.Contains(out, "True") {
		t.Errorf("kubectl get -o wide shows no Spread column:\n%s", out)
	}

	t.Run("evacuation of the master's host", func(t *testing.T) { evacuationDrill(t, lab, f) })
	t.Run("loss of the master's host", func(t *testing.T) { hostLossDrill(t, lab, f) })
}

func evacuationDrill(t *testing.T, lab *harness.ClusterLab, f *redisv1alpha1.RedisSentinelFormation) {
	ctx := context.Background()
	before := waitReady(t, f, 2*time.Minute)
	master := before.Status.Master.Member
	host := memberStatus(before, master).Location
	w, cache := startWriter(t, f)
	time.Sleep(2 * time.Second)
	w.ResetGap()

	start := time.Now()
	if err := lab.Evacuate(ctx, host); err != nil {
		t.Fatalf("evacuating %s: %v", host, err)
	}
	t.Logf("incus cluster evacuate %s took %s", host, time.Since(start).Round(100*time.Millisecond))
	during := waitReady(t, f, 2*time.Minute)
	if during.Status.Master.Member == master {
		t.Fatalf("master still %s after its host was evacuated", master)
	}
	if c := meta.FindStatusCondition(during.Status.Conditions, redisv1alpha1.ConditionSpread); c == nil || c.Status != metav1.ConditionFalse {
		t.Errorf("Spread condition %+v while %s is evacuated", c, host)
	}
	st := finishWriter(t, f, w, cache)
	if switches := during.Status.Failovers - before.Status.Failovers; switches != 1 {
		t.Errorf("%d master switches, want exactly 1", switches)
	}
	// The planned handover, not Sentinel's crash detection: writes resume
	// before a sentinel could even deem the master down. (How short the
	// gap is, is BenchmarkCluster's figure: a timed assertion here failed
	// under a cold build's load at 2.2 s.)
	if downAfter := time.Duration(during.Spec.Sentinel.DownAfterMilliseconds) * time.Millisecond; st.LongestGap >= downAfter {
		t.Errorf("longest write gap %s, want less than down-after-milliseconds (%s): the crash path, not the planned handover", st.LongestGap, downAfter)
	}
	if !slices.ContainsFunc(events(t, f, string("HoldWrites")), func(e corev1.Event) bool { return strings.Contains(e.Message, "is being evacuated") }) {
		t.Errorf("no HoldWrites Event naming the evacuation")
	}
	t.Logf("evacuation: master %s -> %s, switches %d, longest gap %s", master, during.Status.Master.Member, during.Status.Failovers-before.Status.Failovers, st.LongestGap)

	if err := lab.Restore(ctx, host); err != nil {
		t.Fatalf("restoring %s: %v", host, err)
	}
	eventually(t, 3*time.Minute, "Ready and spread again after the restore", func() (bool, string) {
		cur := get(t, f)
		spread := meta.IsStatusConditionTrue(cur.Status.Conditions, redisv1alpha1.ConditionSpread)
		return spread && meta.IsStatusConditionTrue(cur.Status.Conditions, redisv1alpha1.ConditionReady), fmt.Sprintf("phase %s, %v", cur.Status.Phase, cur.Status.Conditions)
	})
	checkSpread(t, lab, f)
}

func hostLossDrill(t *testing.T, lab *harness.ClusterLab, f *redisv1alpha1.RedisSentinelFormation) {
	ctx := context.Background()
	before := waitReady(t, f, 2*time.Minute)
	master := before.Status.Master.Member
	lostInstance := memberStatus(before, master).Instance
	host := memberStatus(before, master).Location
	t.Logf("master %s (instance %s) on %s", master, lostInstance, host)
	w, cache := startWriter(t, f)
	time.Sleep(2 * time.Second)

	killedAt := time.Now()
	if err := lab.StopNode(ctx, host); err != nil {
		t.Fatalf("hard-stopping %s: %v", host, err)
	}
	restarted := false
	t.Cleanup(func() {
		if !restarted {
			_ = lab.StartNode(context.Background(), host)
		}
	})
	var moved *redisv1alpha1.RedisSentinelFormation
	eventually(t, 2*time.Minute, "status names a new master", func() (bool, string) {
		moved = get(t, f)
		return moved.Status.Master != nil && moved.Status.Master.Member != master, fmt.Sprintf("master %+v", moved.Status.Master)
	})
	t.Logf("host %s hard-stopped: status named %s master after %s", host, moved.Status.Master.Member, time.Since(killedAt).Round(100*time.Millisecond))

	var lost *redisv1alpha1.RedisSentinelFormation
	eventually(t, 3*time.Minute, "Ready again with the lost member re-created elsewhere", func() (bool, string) {
		lost = get(t, f)
		m := memberStatus(lost, master)
		ready := meta.IsStatusConditionTrue(lost.Status.Conditions, redisv1alpha1.ConditionReady)
		return ready && m.AbandonedInstance == lostInstance && m.Location != "" && m.Location != host, fmt.Sprintf("phase %s, member %+v", lost.Status.Phase, m)
	})
	t.Logf("member %s re-created on %s %s after the host was stopped", master, memberStatus(lost, master).Location, time.Since(killedAt).Round(time.Second))
	finishWriter(t, f, w, cache)
	if c := meta.FindStatusCondition(lost.Status.Conditions, redisv1alpha1.ConditionSpread); c == nil || c.Reason != controllers.ReasonMembersShareHost {
		t.Errorf("Spread condition %+v while only two hosts are online", c)
	} else {
		t.Logf("Spread: %s", c.Message)
	}
	if n := len(lost.Status.Members); n != 3 {
		t.Errorf("%d members, want 3", n)
	}

	if err := lab.StartNode(ctx, host); err != nil {
		t.Fatal(err)
	}
	restarted = true
	eventually(t, 4*time.Minute, "the abandoned instance deleted and the members spread again", func() (bool, string) {
		cur := get(t, f)
		where, err := lab.InstanceLocations(ctx, "user.rsf.formation-uid", string(cur.UID))
		if err != nil {
			return false, err.Error()
		}
		// Status forgets the abandoned instance only once its delete
		// succeeded; its name may serve the member again since (a member
		// moved back to spread is created under its usual name).
		abandoned := memberStatus(cur, master).AbandonedInstance
		return len(where) == 3 && abandoned == "" && meta.IsStatusConditionTrue(cur.Status.Conditions, redisv1alpha1.ConditionSpread) &&
			meta.IsStatusConditionTrue(cur.Status.Conditions, redisv1alpha1.ConditionReady), fmt.Sprintf("instances %v, abandoned %q, %v", where, abandoned, cur.Status.Conditions)
	})
	checkSpread(t, lab, f)
}
