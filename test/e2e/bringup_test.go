package e2e

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	redisv1alpha1 "github.com/incusops/redis-sentinel-operator/api/v1alpha1"
	"github.com/incusops/redis-sentinel-operator/internal/incus"
	"github.com/incusops/redis-sentinel-operator/internal/redisclient"
	"github.com/incusops/redis-sentinel-operator/internal/render"
)

// TestBringUpReplicateHealAndDelete: the sample's shape comes up Ready, data
// replicates, the sentinels agree, the connection Secret works, a deleted
// replica is rebuilt with the data, and deleting the resource removes exactly
// its own instances.
func TestBringUpReplicateHealAndDelete(t *testing.T) {
	t.Parallel()
	stack(t)
	ctx := context.Background()

	// An instance that is not the formation's: it must survive everything.
	unrelated := uniqueName("unrelated")
	if err := incusSrv.CreateInstance(ctx, incus.InstanceSpec{Name: unrelated, Image: labImage, Profiles: []string{labProfile}}); err != nil {
		t.Fatalf("creating an unrelated instance: %v", err)
	}
	t.Cleanup(func() { _ = incusSrv.DeleteInstance(context.Background(), unrelated) })

	o := formationOpts{}
	f := newFormation(t, "bring", o)
	start := time.Now()
	cur := waitReady(t, f, 3*time.Minute)
	t.Logf("apply -> Ready in %s", time.Since(start).Round(10*time.Millisecond))

	if cur.Status.Master == nil || cur.Status.Master.Member != f.Name+"-1" {
		t.Fatalf("status.master = %+v, want member 1 as bootstrap master", cur.Status.Master)
	}
	if cur.Status.ReadyMembers != 3 || len(cur.Status.Members) != 3 || cur.Status.Sentinels.Reachable != 3 || !cur.Status.Sentinels.QuorumOK {
		t.Fatalf("status not whole: ready %d, members %d, sentinels %+v", cur.Status.ReadyMembers, len(cur.Status.Members), cur.Status.Sentinels)
	}
	if cur.Status.Connection == nil || cur.Status.Connection.SecretName != f.Name+"-connection" || len(cur.Status.Connection.SentinelAddresses) != 3 {
		t.Fatalf("status.connection = %+v", cur.Status.Connection)
	}
	if cur.Status.ObservedGeneration != cur.Generation {
		t.Fatalf("observedGeneration %d, generation %d", cur.Status.ObservedGeneration, cur.Generation)
	}

	// Each member's address was chosen before its container existed: it
	// is pinned on the container, written into it as its static network
	// configuration (no DHCP), and no two members share one.
	holders := map[string]string{}
	for _, m := range cur.Status.Members {
		inst, err := incusSrv.GetInstance(ctx, m.Instance)
		if err != nil {
			t.Fatal(err)
		}
		if inst.IPv4 != m.Address || inst.Devices["eth0"]["ipv4.address"] != m.Address {
			t.Errorf("member %s at %s, pinned %q, status %s", m.Name, inst.IPv4, inst.Devices["eth0"]["ipv4.address"], m.Address)
		}
		if other, dup := holders[m.Address]; dup {
			t.Errorf("members %s and %s share %s", other, m.Name, m.Address)
		}
		holders[m.Address] = m.Name
		res, err := incusSrv.Exec(ctx, m.Instance, []string{"cat", render.NetworkPath})
		if err != nil || !strings.Contains(res.Stdout, "Address="+m.Address+"/") || strings.Contains(res.Stdout, "DHCP=") {
			t.Errorf("member %s: network configuration %q, %v; want the static address %s", m.Name, res.Stdout, err, m.Address)
		}
	}

	password := secretValue(t, f.Namespace, "redis-pw")
	sentinelPassword := secretValue(t, f.Namespace, "sentinel-pw")
	secrets := formationSecrets(t, f)

	// A key written on the master by the backend user (acknowledged by both
	// replicas) is on both.
	master := backendRedis(t, cur, cur.Status.Master.Address)
	defer master.Close()
	if err := master.Set(ctx, "e2e:key", "value-1", 0).Err(); err != nil {
		t.Fatalf("SET on master: %v", err)
	}
	if n, err := master.Wait(ctx, 2, 5*time.Second).Result(); err != nil || n < 2 {
		t.Fatalf("WAIT 2 acknowledged by %d replicas: %v", n, err)
	}
	for _, m := range cur.Status.Members {
		if m.Role != redisv1alpha1.RoleReplica {
			continue
		}
		if v, err := backendRedis(t, cur, m.Address).Get(ctx, "e2e:key").Result(); err != nil || v != "value-1" {
			t.Fatalf("replica %s: GET = %q, %v", m.Name, v, err)
		}
	}

	// Every sentinel (asked by the operator's admin user): CKQUORUM OK,
	// knows 2 other sentinels and 2 replicas, and fails over after the
	// spec's down-after (the replicas' sentinels start with
	// topology.AwaitMasterDownAfterMs while the master is configured).
	for _, m := range cur.Status.Members {
		s := adminSentinel(t, cur, m.Address)
		if res, err := s.CkQuorum(ctx, "mymaster").Result(); err != nil {
			t.Fatalf("sentinel %s CKQUORUM: %v", m.Name, err)
		} else if !strings.HasPrefix(res, "OK") {
			t.Fatalf("sentinel %s CKQUORUM: %s", m.Name, res)
		}
		info, err := s.Master(ctx, "mymaster").Result()
		if err != nil || info["num-other-sentinels"] != "2" || info["num-slaves"] != "2" || info["down-after-milliseconds"] != strconv.Itoa(int(cur.Spec.Sentinel.DownAfterMilliseconds)) {
			t.Fatalf("sentinel %s SENTINEL MASTER: %v, %v", m.Name, info, err)
		}
		_ = s.Close()
	}

	// The connection Secret (the backend user's, REDIS_SENTINEL_USERNAME
	// included) works with go-redis's FailoverClient.
	conn := &corev1.Secret{}
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: f.Namespace, Name: f.Name + "-connection"}, conn); err != nil {
		t.Fatal(err)
	}
	if !metav1.IsControlledBy(conn, cur) {
		t.Fatalf("connection Secret is not owned by the formation: %+v", conn.OwnerReferences)
	}
	checkConnectionSecret(t, f, conn.Data)
	backend, err := redisclient.FromSecretData(conn.Data, redisclient.Options{})
	if err != nil {
		t.Fatalf("client from the connection Secret: %v", err)
	}
	defer backend.Close()
	if v, err := backend.Get(ctx, "e2e:key").Result(); err != nil || v != "value-1" {
		t.Fatalf("FailoverClient GET = %q, %v", v, err)
	}
	if err := backend.Set(ctx, "e2e:via-sentinel", "ok", 0).Err(); err != nil {
		t.Fatalf("FailoverClient SET: %v", err)
	}

	// Delete a replica's container by hand: rebuilt at the same address,
	// back as a replica with the data, Ready again.
	victim := memberStatus(cur, f.Name+"-3").Instance
	before, err := incusSrv.GetInstance(ctx, victim)
	if err != nil {
		t.Fatal(err)
	}
	if err := incusSrv.DeleteInstance(ctx, victim); err != nil {
		t.Fatalf("deleting %s: %v", victim, err)
	}
	deletedAt := metav1.NewTime(time.Now().Truncate(time.Second))
	eventually(t, 3*time.Minute, "replica rebuilt, synced and formation Ready again", func() (bool, string) {
		inst, err := incusSrv.GetInstance(ctx, victim)
		if err != nil {
			return false, err.Error()
		}
		if !inst.CreatedAt.After(before.CreatedAt) {
			return false, "old instance still there"
		}
		cur = get(t, f)
		ready := meta.FindStatusCondition(cur.Status.Conditions, redisv1alpha1.ConditionReady)
		// Ready must have been lost and regained after the deletion.
		return ready != nil && ready.Status == metav1.ConditionTrue && !ready.LastTransitionTime.Before(&deletedAt),
			"phase " + string(cur.Status.Phase)
	})
	rebuilt := memberStatus(cur, f.Name+"-3")
	if rebuilt.Address != before.IPv4 || rebuilt.Role != redisv1alpha1.RoleReplica {
		t.Fatalf("rebuilt member: address %s (was %s), role %s", rebuilt.Address, before.IPv4, rebuilt.Role)
	}
	// With its MAC: the peers' neighbour entries for the address still hold.
	if after, err := incusSrv.GetInstance(ctx, victim); err != nil || after.Devices["eth0"]["hwaddr"] == "" || after.Devices["eth0"]["hwaddr"] != before.Devices["eth0"]["hwaddr"] {
		t.Fatalf("rebuilt member's MAC: %v (%v), was %q", after, err, before.Devices["eth0"]["hwaddr"])
	}
	if v, err := backendRedis(t, cur, rebuilt.Address).Get(ctx, "e2e:via-sentinel").Result(); err != nil || v != "ok" {
		t.Fatalf("rebuilt replica lost the data: %q, %v", v, err)
	}

	// Deleting the resource removes its instances, its connection Secret
	// (even without a garbage collector, as here) and nothing else.
	deleteFormation(t, f)
	if _, err := incusSrv.GetInstance(ctx, unrelated); err != nil {
		t.Fatalf("the unrelated instance was touched: %v", err)
	}
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: f.Namespace, Name: f.Name + "-connection"}, &corev1.Secret{}); !apierrors.IsNotFound(err) {
		t.Fatalf("the connection Secret outlived the formation: %v", err)
	}
	assertNoSecretInLogs(t, append(secrets, password, sentinelPassword)...)
}

func secretValue(t testing.TB, ns, name string) string {
	t.Helper()
	s := &corev1.Secret{}
	if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, s); err != nil {
		t.Fatal(err)
	}
	return string(s.Data["password"])
}

func memberStatus(f *redisv1alpha1.RedisSentinelFormation, name string) redisv1alpha1.MemberStatus {
	for _, m := range f.Status.Members {
		if m.Name == name {
			return m
		}
	}
	return redisv1alpha1.MemberStatus{}
}

// assertNoSecretInLogs scans the operator's logs and the events for the
// secrets, as they are and base64- or URL-encoded.
func assertNoSecretInLogs(t *testing.T, secrets ...string) {
	t.Helper()
	all := logs.String()
	var events corev1.EventList
	if err := k8s.List(context.Background(), &events); err == nil {
		for _, e := range events.Items {
			all += e.Message + "\n"
		}
	}
	for _, s := range secrets {
		for _, form := range secretForms(s) {
			if form != "" && strings.Contains(all, form) {
				t.Fatalf("a password appears in the operator's logs or events")
			}
		}
	}
}
