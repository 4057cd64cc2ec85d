package controllers

import (
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	redisv1alpha1 "github.com/incusops/redis-sentinel-operator/api/v1alpha1"
	"github.com/incusops/redis-sentinel-operator/internal/incus"
	"github.com/incusops/redis-sentinel-operator/internal/instancewatch"
	"github.com/incusops/redis-sentinel-operator/internal/safe"
)

// stubInstanceWatcher stands in for the Incus event watcher: tests set the
// stops it reports, and it records what the reconciler asked.
type stubInstanceWatcher struct {
	mu      sync.Mutex
	opts    map[types.NamespacedName]incus.Options
	watched map[types.NamespacedName][]string
	stops   map[types.NamespacedName]map[string]time.Time
	forgot  []types.NamespacedName
}

var _ InstanceWatcher = (*stubInstanceWatcher)(nil)

func newStubInstanceWatcher() *stubInstanceWatcher {
	return &stubInstanceWatcher{
		opts:    map[types.NamespacedName]incus.Options{},
		watched: map[types.NamespacedName][]string{},
		stops:   map[types.NamespacedName]map[string]time.Time{},
	}
}

func (w *stubInstanceWatcher) Watch(key client.ObjectKey, opts incus.Options, instances []string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.opts[key], w.watched[key] = opts, slices.Clone(instances)
}

func (w *stubInstanceWatcher) Forget(key client.ObjectKey) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.forgot = append(w.forgot, key)
	delete(w.opts, key)
	delete(w.watched, key)
}

func (w *stubInstanceWatcher) StoppedAt(key client.ObjectKey, instance string) time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.stops[key][instance]
}

func (w *stubInstanceWatcher) setStop(key client.ObjectKey, instance string, at time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stops[key] == nil {
		w.stops[key] = map[string]time.Time{}
	}
	w.stops[key][instance] = at
}

func (w *stubInstanceWatcher) watching(key client.ObjectKey) (incus.Options, []string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.opts[key], slices.Clone(w.watched[key])
}

func (w *stubInstanceWatcher) forgotten(key client.ObjectKey) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Contains(w.forgot, key)
}

// A pass hands the watcher every member's and leaving member's instance,
// with the options it connected to Incus with.
func TestReconcileWatchesTheMembersInstances(t *testing.T) {
	e := standardEnv(t)
	r := e.newReconciler()
	e.converge(r, testKey, 40)
	opts, names := e.instanceWatcher.watching(testKey)
	if want := []string{testInstance(1), testInstance(2), testInstance(3)}; !slices.Equal(names, want) {
		t.Errorf("watched instances %v, want %v", names, want)
	}
	f := e.formation(testKey)
	host := &redisv1alpha1.IncusHost{}
	if err := e.client.Get(e.ctx(), client.ObjectKey{Name: f.Status.IncusHost}, host); err != nil {
		t.Fatal(err)
	}
	want, err := hostOptions(e.ctx(), e.client, e.opts.OperatorNamespace, host, f.Spec.Incus.Project)
	if err != nil {
		t.Fatal(err)
	}
	if opts.Key() != want.Key() {
		t.Errorf("watched on %q, want the pass's connection %q", opts.Key(), want.Key())
	}

	// Scaled down: the pass that removes the leaving member still watches
	// its instance (it observed it), the next one no longer.
	e.updateFormation(testKey, func(f *redisv1alpha1.RedisSentinelFormation) { f.Spec.Members = 2 })
	if _, err := e.reconcile(r, testKey); err != nil {
		t.Fatal(err)
	}
	if _, names = e.instanceWatcher.watching(testKey); !slices.Contains(names, testInstance(3)) {
		t.Errorf("watched %v in the pass that saw %s leave", names, testInstance(3))
	}
	e.converge(r, testKey, 40)
	if _, names = e.instanceWatcher.watching(testKey); !slices.Equal(names, []string{testInstance(1), testInstance(2)}) {
		t.Errorf("watched %v once the formation has 2 members", names)
	}
}

// The observation carries the stops the watcher heard of the formation's
// instances, and only those.
func TestObservationCarriesInstanceStops(t *testing.T) {
	e := standardEnv(t)
	r := e.newReconciler()
	e.converge(r, testKey, 40)
	stopped := testStart.Add(-3 * time.Second)
	e.instanceWatcher.setStop(testKey, testInstance(2), stopped)
	e.instanceWatcher.setStop(testKey, "someone-else", stopped)
	e.instanceWatcher.setStop(types.NamespacedName{Namespace: testNamespace, Name: "other"}, testInstance(1), stopped)
	obs := r.observe(e.ctx(), e.formation(testKey), logr.Discard())
	obs.release()
	if want := map[string]time.Time{testInstance(2): stopped}; !maps.Equal(obs.instanceStops, want) {
		t.Errorf("instanceStops %v, want %v", obs.instanceStops, want)
	}
}

// With the real watcher over the fake Incus: a member's container stopped
// from outside triggers its formation at once, the next observation says
// when, and once the operator started it again the stop is over.
func TestIncusStopTriggersTheFormation(t *testing.T) {
	e := standardEnv(t)
	triggered := make(chan types.NamespacedName, 64)
	w := instancewatch.New(logr.Discard(), safe.Guard{}, e.incus, func(key types.NamespacedName) { triggered <- key })
	t.Cleanup(w.Stop)
	r := e.newReconciler()
	r.InstanceWatcher = w
	e.converge(r, testKey, 40)
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
	waitFor("the event stream", func() bool { return e.incus.Streams() == 1 })
	for len(triggered) > 0 {
		<-triggered
	}

	if err := e.incus.SetStatus(testInstance(2), "Stopped"); err != nil {
		t.Fatal(err)
	}
	select {
	case key := <-triggered:
		if key != testKey {
			t.Fatalf("triggered %v, want %v", key, testKey)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a stopped member's instance did not trigger its formation")
	}
	obs := r.observe(e.ctx(), e.formation(testKey), logr.Discard())
	obs.release()
	if obs.instanceStops[testInstance(2)].IsZero() || len(obs.instanceStops) != 1 {
		t.Fatalf("instanceStops %v, want %s's stop only", obs.instanceStops, testInstance(2))
	}

	e.converge(r, testKey, 40)
	waitFor("the start to clear the stop", func() bool {
		obs := r.observe(e.ctx(), e.formation(testKey), logr.Discard())
		obs.release()
		return len(obs.instanceStops) == 0
	})
}
