package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	redisv1alpha1 "github.com/incusops/redis-sentinel-operator/api/v1alpha1"
	"github.com/incusops/redis-sentinel-operator/internal/incus"
	"github.com/incusops/redis-sentinel-operator/internal/testenv"
)

// TestIncusStopEventRestartsReplica: a replica's container hard-stopped by
// hand is started again by the operator because Incus reported the stop,
// not at its next resync and long before Sentinel could call it down.
//
// down-after is a minute, so no Sentinel event comes into it. The suite's
// operator resyncs every resyncPeriod, so each stop is made just after a
// resync pass that followed a whole quiet period: the next resync is then a
// full period away, and a restart sooner than that was triggered by the
// Incus event. Times are Incus's own, from the test's lifecycle stream.
func TestIncusStopEventRestartsReplica(t *testing.T) {
	const downAfter = time.Minute
	f := newFormation(t, "incusevents", formationOpts{mutate: func(f *redisv1alpha1.RedisSentinelFormation) {
		f.Spec.Sentinel.DownAfterMilliseconds = int32(downAfter / time.Millisecond)
	}})
	cur := waitReady(t, f, 3*time.Minute)
	events := listenLifecycle(t)

	var replicas []redisv1alpha1.MemberStatus
	for _, m := range cur.Status.Members {
		if m.Role == redisv1alpha1.RoleReplica {
			replicas = append(replicas, m)
		}
	}
	if len(replicas) != 2 {
		t.Fatalf("replicas %+v, want 2", replicas)
	}
	for _, replica := range replicas {
		waitReady(t, f, 2*time.Minute)
		waitQuietPass(t)
		stopBegan := time.Now()
		if err := incusSrv.StopInstance(context.Background(), replica.Instance, true); err != nil {
			t.Fatalf("hard-stopping %s: %v", replica.Name, err)
		}
		stopped := events.wait(t, replica.Instance, incus.ActionInstanceStopped, 30*time.Second)
		started := events.wait(t, replica.Instance, incus.ActionInstanceStarted, downAfter)
		restart := started.Time.Sub(stopped.Time)
		t.Logf("%s: stop began -> instance-stopped %s, instance-stopped -> started again by the operator %s (resync %s, down-after %s)",
			replica.Name, stopped.Time.Sub(stopBegan).Round(time.Millisecond), restart.Round(time.Millisecond), resyncPeriod, downAfter)
		// Without the event the restart waits for the resync: measured
		// 4.2-4.5 s here (the period less the stop's own 0.7-1 s).
		if restart >= resyncPeriod/2 {
			t.Errorf("%s was started %s after it stopped: as late as a resync, not on Incus's event", replica.Name, restart)
		}

		var m redisv1alpha1.MemberStatus
		eventually(t, time.Minute, "status records the start", func() (bool, string) {
			cur = get(t, f)
			m = memberStatus(cur, replica.Name)
			return m.StartedAt != nil && !m.StartedAt.Time.Before(stopBegan.Truncate(time.Second)), fmt.Sprint("startedAt ", m.StartedAt)
		})
		// startedAt has a precision of a second.
		if d := m.StartedAt.Time.Sub(stopBegan); d >= downAfter/2 {
			t.Errorf("startedAt is %s after the stop, want well under down-after (%s)", d, downAfter)
		}
		for _, e := range cur.Status.RecentEvents {
			if e.Type == "+sdown" && strings.Contains(e.Message, replica.Address) {
				t.Errorf("Sentinel reported %s down (%s at %s): the restart did not come before Sentinel noticed", replica.Name, e.Message, e.Time)
			}
		}
	}
}

// lifecycleEvents are the Incus lifecycle events the test itself receives.
type lifecycleEvents chan incus.LifecycleEvent

// listenLifecycle follows Incus's lifecycle events until the test ends.
func listenLifecycle(t *testing.T) lifecycleEvents {
	t.Helper()
	events := make(lifecycleEvents, 256)
	ctx, cancel := context.WithCancel(context.Background())
	connected, ended := make(chan struct{}), make(chan error, 1)
	go func() {
		ended <- incusSrv.WatchLifecycle(ctx, func() { close(connected) }, func(e incus.LifecycleEvent) {
			select {
			case events <- e:
			default: // a burst of others' events must not block the stream
			}
		})
	}()
	t.Cleanup(func() { cancel(); <-ended })
	select {
	case <-connected:
	case err := <-ended:
		t.Fatalf("listening to Incus events: %v", err)
	}
	return events
}

// wait returns the next event of the instance with that action.
func (l lifecycleEvents) wait(t *testing.T, instance, action string, timeout time.Duration) incus.LifecycleEvent {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case e := <-l:
			if e.Instance == instance && e.Action == action {
				return e
			}
		case <-deadline:
			t.Fatalf("no %s of %s within %s; operator log tail:\n%s", action, instance, timeout, logs.tail(30))
		}
	}
}

// waitQuietPass returns just after a formation pass that came a whole
// resync period after the one before it: no other pass is then scheduled
// before the next resync. (Passes are counted over every formation: this
// test is not parallel, so no other formation is reconciled meanwhile.)
func waitQuietPass(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	last, lastAt := testenv.FormationReconciles(), time.Now()
	for time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
		n := testenv.FormationReconciles()
		if n == last {
			continue
		}
		quiet := time.Since(lastAt) >= resyncPeriod-300*time.Millisecond
		last, lastAt = n, time.Now()
		if quiet {
			return
		}
	}
	t.Fatalf("no pass a whole resync period (%s) after the previous one within a minute; operator log tail:\n%s", resyncPeriod, logs.tail(30))
}
