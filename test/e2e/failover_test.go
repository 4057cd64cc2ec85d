package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	redisv1alpha1 "github.com/incusops/redis-sentinel-operator/api/v1alpha1"
	"github.com/incusops/redis-sentinel-operator/controllers"
	"github.com/incusops/redis-sentinel-operator/internal/config"
	"github.com/incusops/redis-sentinel-operator/internal/metrics"
	"github.com/incusops/redis-sentinel-operator/internal/testenv"
	"github.com/incusops/redis-sentinel-operator/test/harness"
)

// drill is the outcome of one master kill.
type drill struct {
	// KillToSwitch: hard stop -> a sentinel names the new master.
	KillToSwitch time.Duration
	// KillToStatus: hard stop -> status.master names the new master.
	KillToStatus time.Duration
	// SwitchToStatus: the +switch-master event (as status records its time)
	// -> the status write that named the new master.
	SwitchToStatus time.Duration
	From, To       string
}

// killMaster hard-stops the master's container and times the failover as
// Sentinel and as the formation's status see it.
func killMaster(t *testing.T, f *redisv1alpha1.RedisSentinelFormation) drill {
	t.Helper()
	ctx := context.Background()
	cur := get(t, f)
	old := cur.Status.Master
	var witness string // a surviving sentinel
	for _, m := range cur.Status.Members {
		if m.Name != old.Member {
			witness = m.Address
			break
		}
	}
	s := adminSentinel(t, cur, witness)
	defer s.Close()

	// Watch the resource so the status change is timed when it is written.
	statusSeen := make(chan time.Time, 1)
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	go watchMasterChange(watchCtx, f, old.Member, statusSeen)

	killedAt := time.Now()
	if err := incusSrv.StopInstance(ctx, memberStatus(cur, old.Member).Instance, true); err != nil {
		t.Fatalf("hard-stopping %s: %v", old.Member, err)
	}
	d := drill{From: old.Member}
	eventually(t, time.Minute, "a sentinel names a new master", func() (bool, string) {
		addr, err := s.GetMasterAddrByName(ctx, "mymaster").Result()
		if err != nil || addr[0] == old.Address {
			return false, fmt.Sprint(addr, err)
		}
		d.KillToSwitch = time.Since(killedAt)
		return true, ""
	})
	select {
	case at := <-statusSeen:
		d.KillToStatus = at.Sub(killedAt)
	case <-time.After(time.Minute):
		t.Fatalf("status.master still %s a minute after the kill; log:\n%s", old.Member, logs.tail(30))
	}
	cur = get(t, f)
	d.To = cur.Status.Master.Member
	if lf := cur.Status.LastFailover; lf != nil && lf.To == d.To {
		d.SwitchToStatus = d.KillToStatus - lf.Time.Sub(killedAt)
	}
	return d
}

// watchMasterChange reports when the API server first shows another master.
func watchMasterChange(ctx context.Context, f *redisv1alpha1.RedisSentinelFormation, old string, seen chan<- time.Time) {
	for ctx.Err() == nil {
		cur := &redisv1alpha1.RedisSentinelFormation{}
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(f), cur); err == nil && cur.Status.Master != nil && cur.Status.Master.Member != old {
			seen <- time.Now()
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// startWriter starts the backends' client writing to f (WAIT 1), counted
// in its own registry so its hits and misses can be checked exactly.
func startWriter(t *testing.T, f *redisv1alpha1.RedisSentinelFormation) (*harness.Writer, *metrics.Cache) {
	t.Helper()
	cache := metrics.NewCache(prometheus.NewRegistry())
	w, err := harness.StartWriter(context.Background(), k8s, f, harness.WriterOptions{Metrics: cache})
	if err != nil {
		t.Fatal(err)
	}
	return w, cache
}

// finishWriter stops the writer, checks that no acknowledged write is lost
// and, when cache is set, that its hits and misses match the pipelines:
// each is SET + WAIT, two hits when it succeeds, two misses when it fails.
func finishWriter(t *testing.T, f *redisv1alpha1.RedisSentinelFormation, w *harness.Writer, cache *metrics.Cache) harness.WriterStats {
	t.Helper()
	st := w.Stop()
	lost, err := w.Lost(context.Background(), k8s, f)
	if err != nil {
		t.Fatal(err)
	}
	if len(lost) > 0 {
		t.Errorf("%d of %d acknowledged writes lost, e.g. %v", len(lost), len(w.Acknowledged()), lost[:min(5, len(lost))])
	}
	if cache != nil {
		hits := testutil.ToFloat64(cache.HitCounter(metrics.SubsystemPresence))
		misses := testutil.ToFloat64(cache.MissCounter(metrics.SubsystemPresence))
		if hits != float64(2*st.OK) || misses != float64(2*st.Failed) {
			t.Errorf("presence hits %v misses %v; the client saw %d successful and %d failed pipelines", hits, misses, st.OK, st.Failed)
		}
	}
	t.Logf("writes: %d attempted, %d failed (%s), %d acknowledged (WAIT 1), %d lost; longest gap without a successful write %s",
		st.Attempted, st.Failed, st.ErrorKinds(), st.Acknowledged, len(lost), st.LongestGap)
	return st
}

// TestFailoverDrill: hard-stop the master. Incus reports the container
// stopped, so the operator asks a sentinel to fail over at once: the new
// master is elected before down-after (20 s here) could have passed,
// status and `kubectl get rsf` show it with the fast path and the outage
// from the stop, no acknowledged write is lost, the connection Secret is
// not rewritten, and the old master rejoins as a replica.
func TestFailoverDrill(t *testing.T) {
	const downAfter = 20 * time.Second
	f := newFormation(t, "failover", formationOpts{mutate: func(f *redisv1alpha1.RedisSentinelFormation) {
		f.Spec.Sentinel.DownAfterMilliseconds = int32(downAfter.Milliseconds())
	}})
	d, cur := failoverDrill(t, f)
	if d.KillToSwitch >= downAfter {
		t.Fatalf("the new master came %s after the kill, not before down-after (%s): Sentinel alone promoted it", d.KillToSwitch, downAfter)
	}
	lf := cur.Status.LastFailover
	if lf.Path != redisv1alpha1.FailoverPathFast || lf.MasterLostAt == nil || lf.DetectedAt == nil || lf.DetectedAt.Before(lf.MasterLostAt) || lf.Duration == nil || lf.Duration.Duration > d.KillToSwitch+time.Second {
		t.Fatalf("lastFailover = %+v; want the fast path, lost <= detected, an outage no longer than kill -> switch (%s)", lf, d.KillToSwitch)
	}
	eventually(t, 30*time.Second, "a MasterSwitched Event naming the fast path", func() (bool, string) {
		var seen []string
		for _, e := range events(t, f, "MasterSwitched") {
			if strings.Contains(e.Message, "through the fast path") {
				return true, ""
			}
			seen = append(seen, e.Message)
		}
		return false, fmt.Sprint(seen)
	})
}

// TestFailoverDrillSentinelOnly: the same drill with
// spec.sentinel.fastFailover off goes through Sentinel alone, which cannot
// promote before down-after.
func TestFailoverDrillSentinelOnly(t *testing.T) {
	f := newFormation(t, "sentinelonly", formationOpts{mutate: func(f *redisv1alpha1.RedisSentinelFormation) {
		f.Spec.Sentinel.FastFailover = ptr.To(false)
	}})
	d, cur := failoverDrill(t, f)
	if downAfter := time.Duration(cur.Spec.Sentinel.DownAfterMilliseconds) * time.Millisecond; d.KillToSwitch < downAfter {
		t.Fatalf("the new master came %s after the kill, before down-after (%s), with the fast path off", d.KillToSwitch, downAfter)
	}
	if lf := cur.Status.LastFailover; lf.Path != redisv1alpha1.FailoverPathSentinel || lf.MasterLostAt == nil || lf.Duration == nil {
		t.Fatalf("lastFailover = %+v; want the sentinel path with its outage", lf)
	}
}

// failoverDrill hard-stops a Ready formation's master under writes and
// checks what every path must give: a new master within the seed's 30 s,
// status and `kubectl get rsf` naming it, lastFailover filled, the
// connection Secret untouched, no acknowledged write lost, the old master
// back as a replica. It returns the drill and the status right after the
// switch.
func failoverDrill(t *testing.T, f *redisv1alpha1.RedisSentinelFormation) (drill, *redisv1alpha1.RedisSentinelFormation) {
	t.Helper()
	cur := waitReady(t, f, 3*time.Minute)
	secretBefore := connectionSecret(t, cur)
	w, cache := startWriter(t, f)
	time.Sleep(time.Second)

	d := killMaster(t, f)
	t.Logf("drill: kill -> +switch-master seen %s, kill -> status %s, +switch-master -> status %s", d.KillToSwitch, d.KillToStatus, d.SwitchToStatus)
	if d.KillToSwitch >= 30*time.Second {
		t.Fatalf("failover took %s, the seed's criterion is < 30 s", d.KillToSwitch)
	}
	cur = get(t, f)
	lf := cur.Status.LastFailover
	if lf == nil || lf.From != d.From || lf.To != d.To || lf.Duration == nil || lf.Duration.Duration <= 0 || cur.Status.Failovers != 1 {
		t.Fatalf("lastFailover = %+v, failovers %d; want %s -> %s with a duration; events %+v", lf, cur.Status.Failovers, d.From, d.To, cur.Status.RecentEvents)
	}
	t.Logf("lastFailover: path %s, outage %s, detected %s after the loss", lf.Path, lf.Duration.Duration, lf.DetectedAt.Sub(lf.MasterLostAt.Time))
	if out := kubectl(t, "get", "rsf", "-n", f.Namespace, f.Name, "--no-headers"); !strings.Contains(out, d.To) {
		t.Fatalf("kubectl get rsf does not show the new master %s:\n%s", d.To, out)
	}
	if !hasEvent(cur, "+switch-master") {
		t.Fatalf("recentEvents lacks +switch-master: %+v", cur.Status.RecentEvents)
	}

	// Start the old container again (the operator may have done it): it
	// rejoins as a replica and the formation is Ready.
	_ = incusSrv.StartInstance(context.Background(), memberStatus(cur, d.From).Instance)
	ready := waitReady(t, f, 3*time.Minute)
	if m := memberStatus(ready, d.From); m.Role != redisv1alpha1.RoleReplica || !m.MasterLinkUp {
		t.Fatalf("old master %s: role %s, link up %v", d.From, m.Role, m.MasterLinkUp)
	}
	// Nothing a backend needs changed: a backend restarting on Secret
	// changes must not be restarted by a failover.
	if after := connectionSecret(t, ready); after.ResourceVersion != secretBefore.ResourceVersion {
		t.Fatalf("the connection Secret was rewritten during the failover (resourceVersion %s -> %s): %s -> %s",
			secretBefore.ResourceVersion, after.ResourceVersion, secretBefore.Data[config.EnvSentinelAddrs], after.Data[config.EnvSentinelAddrs])
	}
	st := finishWriter(t, f, w, cache)
	// The backend recovers within the failover window (failover-timeout).
	if st.LongestGap >= 30*time.Second {
		t.Fatalf("the connection Secret's client was unavailable for %s", st.LongestGap)
	}
	return d, cur
}

// connectionSecret reads the formation's connection Secret.
func connectionSecret(t *testing.T, f *redisv1alpha1.RedisSentinelFormation) *corev1.Secret {
	t.Helper()
	s := &corev1.Secret{}
	if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: f.Namespace, Name: f.Status.Connection.SecretName}, s); err != nil {
		t.Fatal(err)
	}
	return s
}

// TestSentinelSettingsAndSentinelLoss: quorum and down-after changes reach
// every sentinel without a restart; a stopped sentinel degrades the
// formation until the operator starts it again.
func TestSentinelSettingsAndSentinelLoss(t *testing.T) {
	f := newFormation(t, "sentinels", formationOpts{})
	cur := waitReady(t, f, 3*time.Minute)
	runIDs := sentinelRunIDs(t, cur)

	patch := client.MergeFrom(cur.DeepCopy())
	cur.Spec.Quorum, cur.Spec.Sentinel.DownAfterMilliseconds = 3, 3000
	if err := k8s.Patch(context.Background(), cur, patch); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Minute, "every sentinel reports quorum 3 and down-after 3000", func() (bool, string) {
		for _, m := range cur.Status.Members {
			s := adminSentinel(t, cur, m.Address)
			info, err := s.Master(context.Background(), "mymaster").Result()
			_ = s.Close()
			if err != nil || info["quorum"] != "3" || info["down-after-milliseconds"] != "3000" {
				return false, fmt.Sprintf("%s: quorum %s down-after %s %v", m.Name, info["quorum"], info["down-after-milliseconds"], err)
			}
		}
		return true, ""
	})
	if after := sentinelRunIDs(t, cur); fmt.Sprint(after) != fmt.Sprint(runIDs) {
		t.Fatalf("sentinels restarted to apply settings: run ids %v -> %v", runIDs, after)
	}

	// A sentinel process killed and not restarted by systemd. The operator
	// may start it again in the very pass that reports it down, so the
	// report is looked for in every status version (a watch), not polled.
	conds := recordConditions(t, f)
	victim := memberStatus(cur, f.Name+"-2").Instance
	stoppedAt := time.Now()
	runIn(t, victim, "systemctl stop "+suiteEngine.SentinelUnit)
	eventually(t, time.Minute, "Degraded=True SentinelDown reported", func() (bool, string) {
		_, ok := conds.find(stoppedAt, func(s seenCondition) bool {
			return s.Type == redisv1alpha1.ConditionDegraded && s.Status == string(metav1.ConditionTrue) && s.Reason == controllers.ReasonSentinelDown
		})
		return ok, conds.describe(stoppedAt)
	})
	waitReady(t, f, 2*time.Minute)
}

func sentinelRunIDs(t *testing.T, f *redisv1alpha1.RedisSentinelFormation) []string {
	t.Helper()
	admin := adminCreds(t, f)
	var ids []string
	for _, m := range f.Status.Members {
		c := redisAs(m.Address, sentinelPort(f), admin.Username, admin.Password, admin.TLS.Config())
		info, err := c.InfoMap(context.Background(), "server").Result()
		_ = c.Close()
		if err != nil {
			t.Fatalf("INFO server on sentinel %s: %v", m.Name, err)
		}
		ids = append(ids, info["Server"]["run_id"])
	}
	return ids
}

func hasEvent(f *redisv1alpha1.RedisSentinelFormation, typ string) bool {
	for _, e := range f.Status.RecentEvents {
		if e.Type == typ {
			return true
		}
	}
	return false
}

var kubeconfigOnce sync.Once
var kubeconfigPath string

// kubectl runs the real kubectl against the envtest API server.
func kubectl(t *testing.T, args ...string) string {
	t.Helper()
	kubeconfigOnce.Do(func() {
		kubeconfigPath = filepath.Join(os.TempDir(), "rsf-e2e-kubeconfig-"+strconv.Itoa(os.Getpid()))
		if err := harness.WriteKubeconfig(cfg, kubeconfigPath); err != nil {
			t.Fatal(err)
		}
	})
	out, err := exec.Command("kubectl", append([]string{"--kubeconfig", kubeconfigPath}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// TestFailoverSmokeScript runs ansible/tests/test_redis_failover.sh, the
// seed's game-day smoke test, against a formation.
func TestFailoverSmokeScript(t *testing.T) {
	f := newFormation(t, "smoke", formationOpts{})
	waitReady(t, f, 3*time.Minute)
	kubectl(t, "version", "--client") // writes the kubeconfig
	script := filepath.Join(testenv.RepoRoot(), "ansible", "tests", "test_redis_failover.sh")
	cmd := exec.Command(script, "-n", f.Namespace, f.Name)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfigPath)
	out, err := cmd.CombinedOutput()
	t.Logf("%s", out)
	if err != nil || !strings.Contains(string(out), "PASS") {
		t.Fatalf("failover smoke script failed: %v", err)
	}
	waitReady(t, f, 3*time.Minute)
}
