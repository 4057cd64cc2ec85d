package instancewatch

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/incusops/redis-sentinel-operator/internal/incus"
	"github.com/incusops/redis-sentinel-operator/internal/incus/incusfake"
	"github.com/incusops/redis-sentinel-operator/internal/safe"
)

var (
	formationA = types.NamespacedName{Namespace: "apps", Name: "a"}
	formationB = types.NamespacedName{Namespace: "apps", Name: "b"}
	local      = incus.Options{}
	otherProj  = incus.Options{Project: "other"}
)

// triggers records the watcher's triggers.
type triggers struct {
	mu   sync.Mutex
	keys []types.NamespacedName
	ch   chan struct{}
}

func (tr *triggers) add(key types.NamespacedName) {
	tr.mu.Lock()
	tr.keys = append(tr.keys, key)
	tr.mu.Unlock()
	select {
	case tr.ch <- struct{}{}:
	default:
	}
}

func (tr *triggers) count(key types.NamespacedName) int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	n := 0
	for _, k := range tr.keys {
		if k == key {
			n++
		}
	}
	return n
}

// eventually polls cond for up to 5 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// newWatcher is a watcher over a fresh fake with instances a-1, a-2, b-1
// running and a fast reconnection backoff.
func newWatcher(t *testing.T) (*Watcher, *incusfake.Fake, *triggers) {
	t.Helper()
	fake := incusfake.New()
	for _, name := range []string{"a-1", "a-2", "b-1"} {
		if err := fake.AddInstance(incus.InstanceSpec{Name: name}, "Running"); err != nil {
			t.Fatal(err)
		}
	}
	tr := &triggers{ch: make(chan struct{}, 1)}
	w := New(testr.New(t), safe.Guard{Log: testr.New(t)}, fake, tr.add)
	w.backoff = func() *wait.Backoff {
		return &wait.Backoff{Duration: time.Millisecond, Factor: 2, Steps: 1 << 30, Cap: 20 * time.Millisecond}
	}
	t.Cleanup(w.Stop)
	return w, fake, tr
}

// watchBoth watches a (a-1, a-2) and b (b-1) on opts and waits until their
// stream is up and has triggered both.
func watchBoth(t *testing.T, w *Watcher, fake *incusfake.Fake, tr *triggers, optsA, optsB incus.Options) {
	t.Helper()
	w.Watch(formationA, optsA, []string{"a-1", "a-2"})
	w.Watch(formationB, optsB, []string{"b-1"})
	eventually(t, "the streams to be up", func() bool { return tr.count(formationA) > 0 && tr.count(formationB) > 0 })
}

func TestRoutesEventsToTheOwningFormation(t *testing.T) {
	w, fake, tr := newWatcher(t)
	watchBoth(t, w, fake, tr, local, local)
	a, b := tr.count(formationA), tr.count(formationB)

	before := time.Now()
	if err := fake.StopInstance(t.Context(), "a-2", true); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a's trigger", func() bool { return tr.count(formationA) == a+1 })
	if got := w.StoppedAt(formationA, "a-2"); got.Before(before) || got.After(time.Now()) {
		t.Errorf("StoppedAt(a, a-2) = %v, want the stop's time (after %v)", got, before)
	}
	if got := w.StoppedAt(formationA, "a-1"); !got.IsZero() {
		t.Errorf("StoppedAt(a, a-1) = %v, want zero: it runs", got)
	}
	if got := w.StoppedAt(formationB, "a-2"); !got.IsZero() {
		t.Errorf("StoppedAt(b, a-2) = %v, want zero: not b's", got)
	}

	// An instance of nobody's, and b's own: only b is triggered.
	fake.Emit(incus.LifecycleEvent{Time: time.Now(), Action: incus.ActionInstanceStopped, Instance: "stranger"})
	if err := fake.DeleteInstance(t.Context(), "b-1"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "b's trigger", func() bool { return tr.count(formationB) >= b+1 })
	time.Sleep(20 * time.Millisecond)
	if tr.count(formationA) != a+1 {
		t.Errorf("a triggered %d times, want %d: no event concerned it", tr.count(formationA), a+1)
	}
	if w.StoppedAt(formationB, "b-1").IsZero() {
		t.Error("StoppedAt(b, b-1) is zero after its instance was deleted")
	}
}

func TestOneStreamPerConnection(t *testing.T) {
	for _, tc := range []struct {
		name         string
		optsA, optsB incus.Options
		streams      int
	}{
		{"same server and project", local, local, 1},
		{"another project", local, otherProj, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, fake, tr := newWatcher(t)
			watchBoth(t, w, fake, tr, tc.optsA, tc.optsB)
			// Watching again (each pass does) opens nothing more.
			w.Watch(formationA, tc.optsA, []string{"a-1", "a-2"})
			if got := fake.Streams(); got != tc.streams {
				t.Errorf("%d streams, want %d", got, tc.streams)
			}
			if got := fake.Calls()[incusfake.WatchLifecycle]; got != tc.streams {
				t.Errorf("%d WatchLifecycle calls, want %d", got, tc.streams)
			}

			w.Forget(formationA)
			if got := fake.Streams(); got != 1 {
				t.Errorf("after a is forgotten: %d streams, want 1 (b's)", got)
			}
			w.Forget(formationB)
			if got := fake.Streams(); got != 0 {
				t.Errorf("after the last formation is forgotten: %d streams, want 0", got)
			}
		})
	}
}

func TestFormationMovingAwayStopsItsStream(t *testing.T) {
	w, fake, tr := newWatcher(t)
	w.Watch(formationA, local, []string{"a-1"})
	eventually(t, "the stream", func() bool { return tr.count(formationA) == 1 })
	if err := fake.StopInstance(t.Context(), "a-1", true); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the stop", func() bool { return !w.StoppedAt(formationA, "a-1").IsZero() })

	w.Watch(formationA, otherProj, []string{"a-1"})
	eventually(t, "the new stream", func() bool { return tr.count(formationA) == 3 })
	if got := fake.Streams(); got != 1 {
		t.Errorf("%d streams, want 1: the old one had no formation left", got)
	}
	if got := w.StoppedAt(formationA, "a-1"); !got.IsZero() {
		t.Errorf("StoppedAt = %v after the move, want zero: that was another server's instance", got)
	}
}

func TestReconnectsAndTriggersEveryFormation(t *testing.T) {
	w, fake, tr := newWatcher(t)
	watchBoth(t, w, fake, tr, local, local)
	a, b := tr.count(formationA), tr.count(formationB)

	// incusd restarts: the stream breaks, and the first attempts fail.
	fake.FailNext(incusfake.Connect, errors.New("connection refused"))
	fake.FailNext(incusfake.WatchLifecycle, errors.New("connection refused"))
	fake.BreakStreams(errors.New("websocket: close 1006"))
	eventually(t, "the stream back", func() bool { return fake.Streams() == 1 })
	eventually(t, "both triggered", func() bool { return tr.count(formationA) == a+1 && tr.count(formationB) == b+1 })
	if got := fake.Calls()["Forget"]; got < 2 {
		t.Errorf("connection forgotten %d times, want one per failed attempt (2+)", got)
	}

	// The new stream delivers.
	if err := fake.StopInstance(t.Context(), "a-1", false); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the stop after the reconnection", func() bool { return !w.StoppedAt(formationA, "a-1").IsZero() })
}

func TestStoppedAt(t *testing.T) {
	received := time.Date(2026, 12, 1, 3, 0, 0, 0, time.UTC)
	at := func(s int) time.Time { return received.Add(time.Duration(s) * time.Second) }
	type ev struct {
		action  string
		at      time.Time
		project string
	}
	for _, tc := range []struct {
		name   string
		events []ev
		want   time.Time
	}{
		{"none", nil, time.Time{}},
		{"stopped", []ev{{incus.ActionInstanceStopped, at(-3), ""}}, at(-3)},
		{"shut down", []ev{{incus.ActionInstanceShutdown, at(-3), "default"}}, at(-3)},
		{"deleted", []ev{{incus.ActionInstanceDeleted, at(-3), ""}}, at(-3)},
		{"the latest stop", []ev{{incus.ActionInstanceStopped, at(-5), ""}, {incus.ActionInstanceStopped, at(-2), ""}, {incus.ActionInstanceStopped, at(-4), ""}}, at(-2)},
		{"started again", []ev{{incus.ActionInstanceStopped, at(-3), ""}, {incus.ActionInstanceStarted, at(-2), ""}}, time.Time{}},
		{"restarted", []ev{{incus.ActionInstanceStopped, at(-3), ""}, {incus.ActionInstanceRestarted, at(-2), ""}}, time.Time{}},
		{"a start delivered after a later stop", []ev{{incus.ActionInstanceStopped, at(-2), ""}, {incus.ActionInstanceStarted, at(-3), ""}}, at(-2)},
		{"a stop delivered after a later start", []ev{{incus.ActionInstanceStarted, at(-2), ""}, {incus.ActionInstanceStopped, at(-3), ""}}, time.Time{}},
		{"stopped again after a start", []ev{{incus.ActionInstanceStopped, at(-5), ""}, {incus.ActionInstanceStarted, at(-4), ""}, {incus.ActionInstanceStopped, at(-1), ""}}, at(-1)},
		{"Incus's clock ahead", []ev{{incus.ActionInstanceStopped, at(7), ""}}, received},
		{"no timestamp", []ev{{incus.ActionInstanceStopped, time.Time{}, ""}}, received},
		{"another project", []ev{{incus.ActionInstanceStopped, at(-3), "other"}}, time.Time{}},
		{"not a state change", []ev{{"instance-exec", at(-3), ""}, {"instance-file-pushed", at(-3), ""}}, time.Time{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, fake, tr := newWatcher(t)
			w.now = func() time.Time { return received }
			w.Watch(formationA, local, []string{"a-1"})
			eventually(t, "the stream", func() bool { return tr.count(formationA) == 1 })
			for _, e := range tc.events {
				fake.Emit(incus.LifecycleEvent{Time: e.at, Action: e.action, Instance: "a-1", Project: e.project})
			}
			// A marker event of another instance: once it is routed, so
			// were the events before it.
			w.Watch(formationA, local, []string{"a-1", "marker"})
			fake.Emit(incus.LifecycleEvent{Time: at(-1), Action: incus.ActionInstanceStopped, Instance: "marker"})
			eventually(t, "the marker", func() bool { return !w.StoppedAt(formationA, "marker").IsZero() })
			if got := w.StoppedAt(formationA, "a-1"); !got.Equal(tc.want) {
				t.Errorf("StoppedAt = %v, want %v", got, tc.want)
			}
			wantTriggers := 2 // the connection and the marker
			for _, e := range tc.events {
				if triggering[e.action] && e.project != "other" {
					wantTriggers++
				}
			}
			if got := tr.count(formationA); got != wantTriggers {
				t.Errorf("%d triggers, want %d", got, wantTriggers)
			}
		})
	}
}

func TestForgetDropsState(t *testing.T) {
	w, fake, tr := newWatcher(t)
	watchBoth(t, w, fake, tr, local, local)
	for _, name := range []string{"a-1", "a-2"} {
		if err := fake.StopInstance(t.Context(), name, true); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "the stops", func() bool {
		return !w.StoppedAt(formationA, "a-1").IsZero() && !w.StoppedAt(formationA, "a-2").IsZero()
	})

	// An instance no longer listed is forgotten.
	w.Watch(formationA, local, []string{"a-1"})
	w.Watch(formationA, local, []string{"a-1", "a-2"})
	if !w.StoppedAt(formationA, "a-2").IsZero() {
		t.Error("a-2's stop outlived its instance leaving the list")
	}
	if w.StoppedAt(formationA, "a-1").IsZero() {
		t.Error("a-1's stop was lost by watching it again")
	}

	w.Forget(formationA)
	if !w.StoppedAt(formationA, "a-1").IsZero() {
		t.Error("StoppedAt after Forget is not zero")
	}
	w.Watch(formationA, local, []string{"a-1"})
	if !w.StoppedAt(formationA, "a-1").IsZero() {
		t.Error("a formation watched again after Forget kept its old stop")
	}
	if fake.Streams() != 1 {
		t.Errorf("%d streams, want 1", fake.Streams())
	}
}

func TestStopEndsEveryStream(t *testing.T) {
	w, fake, tr := newWatcher(t)
	watchBoth(t, w, fake, tr, local, otherProj)
	w.Stop()
	if got := fake.Streams(); got != 0 {
		t.Errorf("%d streams after Stop, want 0", got)
	}
}
