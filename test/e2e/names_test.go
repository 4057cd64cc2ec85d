package e2e

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	redisv1alpha1 "github.com/incusops/redis-sentinel-operator/api/v1alpha1"
	"github.com/incusops/redis-sentinel-operator/controllers"
	"github.com/incusops/redis-sentinel-operator/internal/incus"
)

// TestSameNameInTwoNamespaces: two formations with the same name in two
// namespaces (two teams that both chose "cache") are both Ready, each with
// its own three containers, owned by its own UID.
func TestSameNameInTwoNamespaces(t *testing.T) {
	t.Parallel()
	stack(t)
	ctx := context.Background()
	name := uniqueName("names")
	formations := []*redisv1alpha1.RedisSentinelFormation{
		newNamedFormation(t, name, formationOpts{}),
		newNamedFormation(t, name, formationOpts{namespace: name + "-b"}),
	}
	servedBy := map[string]string{} // instance -> namespace
	for _, f := range formations {
		cur := waitReady(t, f, 4*time.Minute)
		owned, err := incusSrv.ListInstances(ctx, "user.rsf.formation-uid", string(cur.UID))
		if err != nil || len(owned) != 3 {
			t.Fatalf("%s/%s owns %d instances (%v), want 3", cur.Namespace, cur.Name, len(owned), err)
		}
		addresses := map[string]bool{}
		for i := 1; i <= 3; i++ {
			want := controllers.InstanceName(cur.Namespace, cur.Name, i)
			m := memberStatus(cur, fmt.Sprintf("%s-%d", cur.Name, i))
			if m.Instance != want {
				t.Fatalf("%s/%s member %s: status records instance %q, want %q", cur.Namespace, cur.Name, m.Name, m.Instance, want)
			}
			inst, err := incusSrv.GetInstance(ctx, want)
			if err != nil {
				t.Fatal(err)
			}
			if inst.Config["user.rsf.formation-uid"] != string(cur.UID) || inst.Config["user.rsf.formation"] != cur.Namespace+"/"+cur.Name ||
				inst.Config["user.rsf.member"] != strconv.Itoa(i) || inst.Status != "Running" || inst.IPv4 != m.Address {
				t.Fatalf("instance %s of %s/%s: %s %s, config %v", want, cur.Namespace, cur.Name, inst.Status, inst.IPv4, inst.Config)
			}
			if other, dup := servedBy[want]; dup {
				t.Fatalf("instance %s serves both %s and %s", want, other, cur.Namespace)
			}
			servedBy[want] = cur.Namespace
			addresses[inst.IPv4] = true
		}
		if cur.Status.Master == nil || !addresses[cur.Status.Master.Address] {
			t.Fatalf("%s/%s: master %+v is not one of its own containers %v", cur.Namespace, cur.Name, cur.Status.Master, addresses)
		}
		t.Logf("%s/%s: instances %s", cur.Namespace, cur.Name, strings.Join([]string{owned[0].Name, owned[1].Name, owned[2].Name}, ", "))
	}
}

// TestInstanceNameClash: an Incus instance that the formation does not own,
// at the name its member 1 would be created under, blocks the formation
// (InstanceNotOwned; nothing is created, adopted or deleted) for as long as
// it is there; once it is deleted, the formation becomes Ready with nothing
// else changed.
func TestInstanceNameClash(t *testing.T) {
	t.Parallel()
	stack(t)
	ctx := context.Background()
	name := uniqueName("clash")
	foreign := incus.InstanceSpec{Name: controllers.InstanceName(name, name, 1), Image: labImage, Profiles: []string{labProfile},
		Config: map[string]string{"user.e2e": "not-yours"}}
	if err := incusSrv.CreateInstance(ctx, foreign); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { // unless the test got to delete it; never the member's instance
		if inst, err := incusSrv.GetInstance(context.Background(), foreign.Name); err == nil && inst.Config["user.e2e"] == "not-yours" {
			_ = incusSrv.DeleteInstance(context.Background(), foreign.Name)
		}
	})
	f := newNamedFormation(t, name, formationOpts{})
	cur := waitCondition(t, f, time.Minute, redisv1alpha1.ConditionDegraded, metav1.ConditionTrue, controllers.ReasonInstanceNotOwned)
	t.Logf("%s: %s", controllers.ReasonInstanceNotOwned, conditionMessage(cur, redisv1alpha1.ConditionDegraded))
	if !strings.Contains(conditionMessage(cur, redisv1alpha1.ConditionDegraded), foreign.Name) {
		t.Fatalf("the condition does not name the instance %s", foreign.Name)
	}
	// Still blocked over several polls: nothing created, adopted or deleted.
	time.Sleep(10 * time.Second)
	cur = get(t, f)
	if cur.Status.Phase != redisv1alpha1.PhaseBlocked {
		t.Fatalf("phase %s while the clash lasts", cur.Status.Phase)
	}
	if owned, err := incusSrv.ListInstances(ctx, "user.rsf.formation-uid", string(cur.UID)); err != nil || len(owned) != 0 {
		t.Fatalf("instances created despite the clash: %d (%v)", len(owned), err)
	}
	inst, err := incusSrv.GetInstance(ctx, foreign.Name)
	if err != nil || inst.Config["user.e2e"] != "not-yours" || inst.Config["user.rsf.formation-uid"] != "" {
		t.Fatalf("the foreign instance was deleted or adopted: %+v, %v", inst, err)
	}
	if _, err := incusSrv.GetInstance(ctx, controllers.InstanceName(name, name, 2)); !errors.Is(err, incus.ErrNotFound) {
		t.Fatalf("member 2 was created although member 1's name is taken: %v", err)
	}

	// The clash is removed by hand; nothing else changes.
	if err := incusSrv.DeleteInstance(ctx, foreign.Name); err != nil {
		t.Fatal(err)
	}
	deleted := time.Now()
	cur = waitReady(t, f, 3*time.Minute)
	t.Logf("Ready %.1f s after the foreign instance was deleted", time.Since(deleted).Seconds())
	if cur.Generation != 1 {
		t.Fatalf("generation %d: the spec changed", cur.Generation)
	}
	inst, err = incusSrv.GetInstance(ctx, foreign.Name)
	if err != nil || inst.Config["user.rsf.formation-uid"] != string(cur.UID) || memberStatus(cur, name+"-1").Instance != foreign.Name {
		t.Fatalf("member 1's instance: %+v, %v; status %+v", inst, err, memberStatus(cur, name+"-1"))
	}
}
