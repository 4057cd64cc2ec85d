package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	redisv1alpha1 "github.com/incusops/redis-sentinel-operator/api/v1alpha1"
	"github.com/incusops/redis-sentinel-operator/controllers"
)

// update patches the formation's spec.
func update(t *testing.T, f *redisv1alpha1.RedisSentinelFormation, change func(*redisv1alpha1.RedisSentinelFormationSpec)) {
	t.Helper()
	cur := get(t, f)
	patch := client.MergeFrom(cur.DeepCopy())
	change(&cur.Spec)
	if err := k8s.Patch(context.Background(), cur, patch); err != nil {
		t.Fatalf("patching the spec: %v", err)
	}
}

// readyAfter waits for Ready observed for the current generation.
func readyAfter(t *testing.T, f *redisv1alpha1.RedisSentinelFormation, timeout time.Duration) *redisv1alpha1.RedisSentinelFormation {
	t.Helper()
	var cur *redisv1alpha1.RedisSentinelFormation
	eventually(t, timeout, "Ready at the new generation", func() (bool, string) {
		cur = get(t, f)
		return cur.Status.ObservedGeneration == cur.Generation && cur.Status.Phase == redisv1alpha1.PhaseReady,
			fmt.Sprintf("generation %d observed %d phase %s; Ready: %s", cur.Generation, cur.Status.ObservedGeneration, cur.Status.Phase, conditionMessage(cur, redisv1alpha1.ConditionReady))
	})
	return cur
}

// runIDs are the redis-server and sentinel run ids of every member (read
// by the admin user): a restart changes them.
func runIDs(t testing.TB, f *redisv1alpha1.RedisSentinelFormation) map[string]string {
	t.Helper()
	admin := adminCreds(t, f)
	ids := map[string]string{}
	for _, m := range f.Status.Members {
		for _, port := range []int32{redisPort(f), sentinelPort(f)} {
			c := redisAs(m.Address, port, admin.Username, admin.Password, admin.TLS.Config())
			info, err := c.InfoMap(context.Background(), "server").Result()
			_ = c.Close()
			if err != nil {
				t.Fatalf("INFO server on %s:%d: %v", m.Name, port, err)
			}
			ids[fmt.Sprintf("%s:%d", m.Name, port)] = info["Server"]["run_id"]
		}
	}
	return ids
}

// sentinelCounts checks every sentinel's SENTINEL MASTER counts.
func sentinelCounts(t testing.TB, f *redisv1alpha1.RedisSentinelFormation, want int) (bool, string) {
	for _, m := range f.Status.Members {
		s := adminSentinel(t, f, m.Address)
		info, err := s.Master(context.Background(), "mymaster").Result()
		_ = s.Close()
		if err != nil || info["num-slaves"] != fmt.Sprint(want) || info["num-other-sentinels"] != fmt.Sprint(want) {
			return false, fmt.Sprintf("%s: num-slaves %s num-other-sentinels %s (want %d) %v", m.Name, info["num-slaves"], info["num-other-sentinels"], want, err)
		}
	}
	return true, ""
}

// TestLiveChanges: runtime settings are applied without restart or
// failover; scaling 3 -> 5 -> 3 leaves Sentinel's counts exact; a new image
// alias replaces every container with one master switch; a writer runs
// throughout and loses no acknowledged write.
func TestLiveChanges(t *testing.T) {
	t.Parallel()
	stack(t)
	// The image roll below moves to a second alias: a host that allows it.
	alias := uniqueName("rsf-e2e-image")
	host := uniqueName("changes-host")
	newHost(t, host, func(h *redisv1alpha1.IncusHost) {
		h.Spec.NamespaceSelector = &metav1.LabelSelector{}
		h.Spec.Allowed.Images = []string{labImage, alias}
	})
	f := newFormation(t, "changes", formationOpts{mutate: func(f *redisv1alpha1.RedisSentinelFormation) { f.Spec.Incus.HostRef = host }})
	cur := waitReady(t, f, 3*time.Minute)
	w, _ := startWriter(t, f)
	before := runIDs(t, cur)

	// Runtime settings: live, on every member, no restart, no failover.
	update(t, f, func(s *redisv1alpha1.RedisSentinelFormationSpec) {
		s.Redis.Maxmemory, s.Redis.MaxmemoryPolicy = "256mb", "volatile-lru"
		s.Quorum, s.Sentinel.DownAfterMilliseconds = 3, 4000
	})
	cur = readyAfter(t, f, 2*time.Minute)
	eventually(t, time.Minute, "maxmemory and policy on every member", func() (bool, string) {
		for _, m := range cur.Status.Members {
			r := adminRedis(t, cur, m.Address)
			got, err := r.ConfigGet(context.Background(), "maxmemory*").Result()
			_ = r.Close()
			if err != nil || got["maxmemory"] != "268435456" || got["maxmemory-policy"] != "volatile-lru" {
				return false, fmt.Sprintf("%s: %v %v", m.Name, got, err)
			}
		}
		return true, ""
	})
	if after := runIDs(t, cur); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("a server restarted to apply settings:\nbefore %v\nafter  %v", before, after)
	}
	if cur.Status.Failovers != 0 {
		t.Fatalf("settings change caused %d failovers", cur.Status.Failovers)
	}

	// Scale 3 -> 5 (a majority quorum of 5 is 3) and back.
	update(t, f, func(s *redisv1alpha1.RedisSentinelFormationSpec) { s.Members, s.Quorum = 5, 3 })
	cur = readyAfter(t, f, 4*time.Minute)
	eventually(t, time.Minute, "5 members counted by every sentinel", func() (bool, string) { return sentinelCounts(t, get(t, f), 4) })
	update(t, f, func(s *redisv1alpha1.RedisSentinelFormationSpec) { s.Members, s.Quorum = 3, 2 })
	cur = readyAfter(t, f, 4*time.Minute)
	eventually(t, 2*time.Minute, "3 members counted by every sentinel", func() (bool, string) { return sentinelCounts(t, get(t, f), 2) })
	for _, gone := range []string{controllers.InstanceName(f.Namespace, f.Name, 4), controllers.InstanceName(f.Namespace, f.Name, 5)} {
		if _, err := incusSrv.GetInstance(context.Background(), gone); err == nil {
			t.Fatalf("%s still exists after the scale-down", gone)
		}
	}

	// A second image alias: every container is replaced, one master switch.
	target, err := exec.Command("incus", "query", "/1.0/images/aliases/"+labImage).Output()
	if err != nil {
		t.Fatalf("reading the lab image alias: %v", err)
	}
	var aliasInfo struct{ Target string }
	if err := json.Unmarshal(target, &aliasInfo); err != nil || aliasInfo.Target == "" {
		t.Fatalf("lab image alias target: %q %v", target, err)
	}
	if out, err := exec.Command("incus", "image", "alias", "create", alias, aliasInfo.Target).CombinedOutput(); err != nil {
		t.Fatalf("creating image alias: %v %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("incus", "image", "alias", "delete", alias).Run() })
	created := map[string]time.Time{}
	for _, m := range cur.Status.Members {
		inst, err := incusSrv.GetInstance(context.Background(), m.Instance)
		if err != nil {
			t.Fatal(err)
		}
		created[m.Instance] = inst.CreatedAt
	}
	failoversBefore := cur.Status.Failovers
	w.ResetGap()
	update(t, f, func(s *redisv1alpha1.RedisSentinelFormationSpec) { s.Incus.Image = alias })
	eventually(t, 10*time.Minute, "every container replaced and the formation Ready", func() (bool, string) {
		cur = get(t, f)
		for name, at := range created {
			inst, err := incusSrv.GetInstance(context.Background(), name)
			if err != nil || !inst.CreatedAt.After(at) {
				return false, name + " not replaced yet; " + conditionMessage(cur, redisv1alpha1.ConditionProgressing)
			}
		}
		ready := cur.Status.Phase == redisv1alpha1.PhaseReady
		return ready, "phase " + string(cur.Status.Phase)
	})
	if switches := cur.Status.Failovers - failoversBefore; switches != 1 {
		t.Fatalf("the roll switched the master %d times, want exactly 1", switches)
	}
	st := finishWriter(t, f, w, nil)
	t.Logf("image roll: longest gap in successful writes %s", st.LongestGap)
	if !strings.Contains(kubectl(t, "get", "rsf", "-n", f.Namespace, f.Name, "-o", "jsonpath={.spec.incus.image}"), alias) {
		t.Fatal("spec not updated")
	}
}
