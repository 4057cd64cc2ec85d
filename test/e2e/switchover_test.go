package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	redisv1alpha1 "github.com/incusops/redis-sentinel-operator/api/v1alpha1"
	"github.com/incusops/redis-sentinel-operator/controllers"
)

// requestSwitchover annotates the formation with kubectl, as a user would,
// and waits until the operator handled that request (refused, failed or
// succeeded).
func requestSwitchover(t *testing.T, f *redisv1alpha1.RedisSentinelFormation, value string) *redisv1alpha1.RedisSentinelFormation {
	t.Helper()
	kubectl(t, "annotate", "rsf", "-n", f.Namespace, f.Name, "--overwrite", redisv1alpha1.AnnotationSwitchover+"="+value)
	var cur *redisv1alpha1.RedisSentinelFormation
	eventually(t, 2*time.Minute, "the switchover to "+value+" handled", func() (bool, string) {
		cur = get(t, f)
		sw := cur.Status.Switchover
		if sw == nil {
			return false, "no status.switchover"
		}
		return sw.Request == value && sw.Phase != redisv1alpha1.SwitchoverInProgress, fmt.Sprintf("%+v", *sw)
	})
	return cur
}

// expectRefused asks for a switchover that must be refused with reason,
// and checks that nothing moved.
func expectRefused(t *testing.T, f *redisv1alpha1.RedisSentinelFormation, value, reason string) {
	t.Helper()
	before := get(t, f)
	cur := requestSwitchover(t, f, value)
	sw := cur.Status.Switchover
	if sw.Phase != redisv1alpha1.SwitchoverRefused || sw.Reason != reason {
		t.Fatalf("switchover to %s: %s %s (%s), want Refused %s", value, sw.Phase, sw.Reason, sw.Message, reason)
	}
	c := meta.FindStatusCondition(cur.Status.Conditions, redisv1alpha1.ConditionSwitchover)
	if c == nil || c.Status != metav1.ConditionFalse || c.Reason != reason {
		t.Fatalf("Switchover condition %+v, want False %s", c, reason)
	}
	if cur.Status.Master.Member != before.Status.Master.Member || cur.Status.Failovers != before.Status.Failovers || cur.Status.PlannedFailover != nil && cur.Status.PlannedFailover.Phase != redisv1alpha1.PlannedFailoverDone {
		t.Fatalf("a refused switchover changed the master (%s -> %s), the failovers (%d -> %d) or started a planned failover (%+v)",
			before.Status.Master.Member, cur.Status.Master.Member, before.Status.Failovers, cur.Status.Failovers, cur.Status.PlannedFailover)
	}
	eventually(t, 30*time.Second, "a Warning Event SwitchoverRefused naming "+reason, func() (bool, string) {
		for _, e := range events(t, f, "SwitchoverRefused") {
			if e.Type == corev1.EventTypeWarning && strings.Contains(e.Message, sw.Message) {
				return true, ""
			}
		}
		return false, "none"
	})
	t.Logf("switchover to %s refused: %s: %s", value, reason, sw.Message)
}

// replicaOtherThan names a member that is neither the master nor except.
func replicaOtherThan(f *redisv1alpha1.RedisSentinelFormation, except string) string {
	for _, m := range f.Status.Members {
		if m.Name != f.Status.Master.Member && m.Name != except {
			return m.Name
		}
	}
	return ""
}

// TestSwitchover: under writes (SET + WAIT 1 through the connection
// Secret's FailoverClient), a switchover to a named replica and one to
// "any" each move the master once and lose no acknowledged write; then bad
// requests are each refused with their reason and change nothing.
func TestSwitchover(t *testing.T) {
	f := newFormation(t, "switchover", formationOpts{})
	cur := waitReady(t, f, 3*time.Minute)
	w, cache := startWriter(t, f)
	time.Sleep(time.Second)

	failovers, first := cur.Status.Failovers, cur.Status.Master.Member
	target := replicaOtherThan(cur, "")
	start := time.Now()
	cur = requestSwitchover(t, f, target)
	if sw := cur.Status.Switchover; sw.Phase != redisv1alpha1.SwitchoverSucceeded || sw.From != first || sw.To != target {
		t.Fatalf("switchover to %s: %+v", target, *sw)
	}
	t.Logf("switchover %s -> %s took %s (%s)", first, target, time.Since(start).Round(time.Millisecond), cur.Status.Switchover.Message)
	cur = waitReady(t, f, 2*time.Minute)
	if cur.Status.Master.Member != target || cur.Status.Failovers != failovers+1 {
		t.Fatalf("master %s after %d failovers, want %s after %d", cur.Status.Master.Member, cur.Status.Failovers, target, failovers+1)
	}
	if lf := cur.Status.LastFailover; lf == nil || lf.Path != redisv1alpha1.FailoverPathPlanned || lf.Duration == nil {
		t.Fatalf("lastFailover %+v, want the planned path with the write hold's duration", lf)
	}
	eventually(t, time.Minute, "the lowered replica priorities given back", func() (bool, string) {
		cur = get(t, f)
		if sw := cur.Status.Switchover; len(sw.LoweredPriorities) > 0 {
			return false, fmt.Sprintf("still lowered: %v", sw.LoweredPriorities)
		}
		for _, m := range cur.Status.Members {
			if m.Name == cur.Status.Master.Member {
				continue
			}
			c := adminRedis(t, cur, m.Address)
			prio, err := c.ConfigGet(context.Background(), "replica-priority").Result()
			_ = c.Close()
			if err != nil || prio["replica-priority"] != "100" {
				return false, fmt.Sprintf("%s: replica-priority %v %v", m.Name, prio, err)
			}
		}
		return true, ""
	})
	if len(events(t, f, "SwitchoverSucceeded")) == 0 {
		t.Fatal("no SwitchoverSucceeded Event")
	}

	start = time.Now()
	cur = requestSwitchover(t, f, redisv1alpha1.SwitchoverAny)
	if sw := cur.Status.Switchover; sw.Phase != redisv1alpha1.SwitchoverSucceeded || sw.From != target || sw.To == target || sw.To == "" {
		t.Fatalf("switchover to any: %+v", *sw)
	}
	t.Logf("switchover %s -> any (%s) took %s", target, cur.Status.Switchover.To, time.Since(start).Round(time.Millisecond))
	cur = waitReady(t, f, 2*time.Minute)
	if cur.Status.Master.Member != cur.Status.Switchover.To || cur.Status.Failovers != failovers+2 {
		t.Fatalf("master %s after %d failovers, want %s after %d", cur.Status.Master.Member, cur.Status.Failovers, cur.Status.Switchover.To, failovers+2)
	}
	finishWriter(t, f, w, cache)

	master := cur.Status.Master.Member
	expectRefused(t, f, f.Name+"-9", controllers.ReasonUnknownMember)
	expectRefused(t, f, master, controllers.ReasonTargetIsMaster)

	// A replica stopped twice within a minute of the operator starting it
	// stays stopped (the crash window): asked for, it is not in sync;
	// asking for the other replica meets a formation that is not Ready.
	stopped := replicaOtherThan(cur, "")
	instance := memberStatus(cur, stopped).Instance
	stopAt := time.Now()
	if err := incusSrv.StopInstance(context.Background(), instance, true); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Minute, "the operator starts "+stopped+" again", func() (bool, string) {
		m := memberStatus(get(t, f), stopped)
		return m.StartedAt != nil && !m.StartedAt.Time.Before(stopAt.Truncate(time.Second)), fmt.Sprintf("startedAt %v", m.StartedAt)
	})
	waitReady(t, f, 2*time.Minute)
	if err := incusSrv.StopInstance(context.Background(), instance, true); err != nil {
		t.Fatal(err)
	}
	expectRefused(t, f, stopped, controllers.ReasonTargetNotInSync)
	expectRefused(t, f, replicaOtherThan(cur, stopped), controllers.ReasonNotReady)
	if inst, err := incusSrv.GetInstance(context.Background(), instance); err != nil || inst.Status != "Stopped" {
		t.Fatalf("%s left the crash window during the test (%v, %v): the NotReady refusal proves nothing", stopped, inst, err)
	}
	if err := incusSrv.StartInstance(context.Background(), instance); err != nil {
		t.Fatal(err)
	}
	cur = waitReady(t, f, 2*time.Minute)
	if cur.Status.Master.Member != master || cur.Status.Failovers != failovers+2 {
		t.Fatalf("after the refused requests: master %s, failovers %d; want %s, %d", cur.Status.Master.Member, cur.Status.Failovers, master, failovers+2)
	}
}

// TestPause: a paused formation whose replica container is stopped by hand
// leaves it stopped and says Paused (a switchover asked meanwhile is
// refused); once the annotation is removed the replica is started again
// and the formation is Ready.
func TestPause(t *testing.T) {
	t.Parallel()
	f := newFormation(t, "pause", formationOpts{})
	cur := waitReady(t, f, 3*time.Minute)
	kubectl(t, "annotate", "rsf", "-n", f.Namespace, f.Name, redisv1alpha1.AnnotationPause+"=maintenance")
	waitCondition(t, f, 30*time.Second, redisv1alpha1.ConditionPaused, metav1.ConditionTrue, controllers.ReasonPaused)

	replica := replicaOtherThan(cur, "")
	instance := memberStatus(cur, replica).Instance
	if err := incusSrv.StopInstance(context.Background(), instance, true); err != nil {
		t.Fatal(err)
	}
	expectRefused(t, f, redisv1alpha1.SwitchoverAny, controllers.ReasonPaused)
	eventually(t, time.Minute, "status says the start of "+replica+" is withheld", func() (bool, string) {
		cur = get(t, f)
		c := meta.FindStatusCondition(cur.Status.Conditions, redisv1alpha1.ConditionPaused)
		if c == nil {
			return false, "no Paused condition"
		}
		return cur.Status.Phase == redisv1alpha1.PhasePaused && strings.Contains(c.Message, "StartInstance "+replica), fmt.Sprintf("phase %s, Paused: %s", cur.Status.Phase, c.Message)
	})
	// Longer than a resync: nothing starts it.
	time.Sleep(20 * time.Second)
	if inst, err := incusSrv.GetInstance(context.Background(), instance); err != nil || inst.Status != "Stopped" {
		t.Fatalf("the paused formation's %s: %+v %v, want Stopped", replica, inst, err)
	}
	if cur = get(t, f); cur.Status.Phase != redisv1alpha1.PhasePaused || memberStatus(cur, replica).InstanceState != "Stopped" {
		t.Fatalf("phase %s, %s %s", cur.Status.Phase, replica, memberStatus(cur, replica).InstanceState)
	}

	kubectl(t, "annotate", "rsf", "-n", f.Namespace, f.Name, redisv1alpha1.AnnotationPause+"-")
	waitCondition(t, f, 30*time.Second, redisv1alpha1.ConditionPaused, metav1.ConditionFalse, controllers.ReasonResumed)
	cur = waitReady(t, f, 2*time.Minute)
	if m := memberStatus(cur, replica); m.InstanceState != "Running" || m.Health != redisv1alpha1.HealthHealthy {
		t.Fatalf("%s after resuming: %s %s", replica, m.InstanceState, m.Health)
	}
	for _, reason := range []string{controllers.ReasonPaused, controllers.ReasonResumed} {
		if len(events(t, f, reason)) == 0 {
			t.Errorf("no %s Event", reason)
		}
	}
}
